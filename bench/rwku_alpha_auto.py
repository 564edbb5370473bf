"""Ablation: ULMR on RWKU with α chosen per run by `--alpha auto` instead of the bench's fixed selected α.

usage: python bench/rwku_alpha_auto.py RUN_DIR --targets 111,106,31 --seeds 2 --out DIR

RUN_DIR is a `ulmr bench rwku` curves run (its settings, Before stages and, where present, its D_fr generation
caches are reused). For each target and seed this trains ULMR's p_f exactly as the bench does (same data, recipe
and seed; the run's stage key must match these settings), then

- runs the `--alpha auto` sweep of `ulmr unlearn` (:func:`ulmr.sweep.sweep` over ``AUTO_ALPHAS`` on the run's
  held-out probe rewrites, the built-in anchor answered by the base model, the easy utility set) and takes
  :func:`ulmr.sweep.select_alpha`'s α: what the tool chooses without seeing any RWKU evaluation item;
- evaluates RWKU (the bench's `evaluate`) at the bench's fixed α (0.4), at 0.2 and 0.3, and at the auto α
  (``--skip-auto``: no sweep, the fixed α values only).

One JSON per (target, seed) in DIR (resumable: done pairs are skipped); then the report half of each α rule,
merged over targets as the bench merges them, per seed, as a Markdown table on stdout.

``--neighbourhood N`` (a candidate, measured and dropped: docs/results/ulmr_ablation.md §14-15; use another DIR):
ULMR's retain side also gets up to N questions "Tell me about E." with the first sentence of the base model's greedy
answer, for the entities its D_fr rows name most often besides the subject (its name, and the entities named in at
least half of the forget questions), one per family of runs, skipping answers that name the subject or repeat
themselves (:func:`neighbourhood_rows`; the code before this rule, dfb64c2, kept whole answers of the first N
entities and judged repetition without the question, which left 3 and 1 rows on targets 31 and 111). Built from the
forget side only, no evaluation item is read; but these rows name what RWKU's neighbour probes name, which the
bench's anchor filter forbids, so a table with them must say so (and give GradDiff and KL the same rows for a fair
comparison).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from ulmr.anchor import entity_words
from ulmr.atomic import write_json
from ulmr.benchmarks import common, curves
from ulmr.benchmarks.common import StageStore
from ulmr.benchmarks.rwku_bench import (
    RwkuBenchConfig,
    _folder,
    _train_config,
    anchor_rows,
    before_key,
    evaluate,
    forget_texts,
    merge_targets,
    method_data,
    reject_records,
    selection_view,
    stage_key,
)
from ulmr.config import BackendConfig, GenerateConfig
from ulmr.data.records import QARecord
from ulmr.generate.filters import capitalised_runs, repetitive
from ulmr.inference import cached_answers
from ulmr.merge import Interpolator
from ulmr.methods.registry import method_class
from ulmr.models import base_weights_dir, cached_model_dir, load
from ulmr.pipeline import make_backend, run_generation
from ulmr.sweep import AUTO_ALPHAS, select_alpha, sweep

FIXED = 0.4  # the bench's selected α at seed 0 (docs/results/rwku.md)
EXTRA = (0.2, 0.3)


def generation_dir(work: Path, target: int, seed: int) -> Path:
    """The folder of ULMR's generation cache for (target, seed), as :func:`method_data` names it under ``work``."""
    return work / (f"t{target}-ulmr-generation" + (f"-seed{seed}" if seed else ""))


def cells(row: dict, keys: tuple[str, ...]) -> str:
    """A table row's metric cells."""
    return " | ".join("-" if row.get(k) is None else f"{row[k]:.2f}" for k in keys)


def probe_items(cfg: RwkuBenchConfig, target: int, base: str, work: Path, seed: int) -> list[QARecord]:
    """The held-out probe rewrites of the run's generation stage. :func:`method_data` returns D_fr's rows only, so
    the stage is run again here: its answers and generations come from the cache method_data fills."""
    model, tok = load(base)
    records = reject_records(_folder(cfg.data, target), cfg.limit_train, model, tok, cfg.answer_tokens, cfg.eval_batch_size)
    gen = GenerateConfig(seed=seed, max_new_tokens=cfg.gen_max_new_tokens, gen_batch_size=cfg.eval_batch_size,
                         filters=method_class("ulmr").generation_filters)
    res = run_generation(gen, records, make_backend(BackendConfig(), model, tok), work)
    return [QARecord(p["question"], p["answer"]) for p in res.probes]


def subject_words(rows: list[dict], subject: str) -> set[str]:
    """Lower-cased words of the subject: its name's and those of the entities named in at least half of D_fr's
    original forget questions."""
    questions = list({r["question"]: None for r in rows if r.get("variant") == "original"})
    in_questions = Counter(e for q in questions for e in set(capitalised_runs(q)))
    named = [subject, *(e for e, c in in_questions.items() if c >= len(questions) / 2)]
    return {w.lower().strip(".") for e in named for w in e.split()}


def run_words(entity: str) -> set[str]:
    """Lower-cased words of 3+ letters of one capitalised run (its lower-case inner words included)."""
    return {w.lower() for w in re.findall(r"[A-Za-z][\w'-]+", entity) if len(w) > 2}


def neighbourhood_entities(rows: list[dict], subject: set[str], n: int) -> list[str]:
    """The ``n`` entities (capitalised runs with a word of 3+ letters) D_fr's rows name most often, without the
    ``subject`` words (:func:`subject_words`), one per family: a run sharing a word of 3+ letters with a more
    frequent one is skipped ("Lisa del Carm" after "Mona Lisa", "New Deal Act" after "New Deal")."""
    taken = set(subject)
    texts = [str(r.get(k) or "") for r in rows for k in ("question", "answer", "original_answer")]
    counts = Counter(e for t in texts for e in capitalised_runs(t) if run_words(e))
    chosen: list[str] = []
    for e, _ in counts.most_common():
        if not run_words(e) & taken:
            chosen.append(e)
            taken |= run_words(e)
        if len(chosen) == n:
            break
    return chosen


def first_sentence(text: str) -> str:
    """The first complete sentence of a generation (the whole text when none ends)."""
    m = re.search(r"[.!?](\s|$)", text)
    return text[: m.end()].strip() if m else text.strip()


def keep_neighbourhood_answer(question: str, answer: str, subject: set[str]) -> bool:
    """A usable retain row: an answer of 6+ words that neither names the subject (it would keep what is being
    forgotten) nor repeats itself beyond what the question names."""
    return len(answer.split()) >= 6 and not (entity_words(answer) & subject) and not repetitive(answer, question)


def neighbourhood_rows(base: str, rows: list[dict], subject: str, n: int, work: Path) -> list[QARecord]:
    """Up to ``n`` retain rows: the base model's first sentence in answer to "Tell me about E." for the
    candidates of :func:`neighbourhood_entities` (``3 n`` asked), in order, those
    :func:`keep_neighbourhood_answer` keeps."""
    model, tok = load(base)
    words = subject_words(rows, subject)
    questions = [f"Tell me about {e}." for e in neighbourhood_entities(rows, words, 3 * n)]
    answers, _ = cached_answers(model, tok, questions, work / "neighbourhood.jsonl", batch_size=16,
                                description="neighbourhood answers", post=first_sentence)
    kept = [QARecord(q, a) for q, a in zip(questions, answers) if keep_neighbourhood_answer(q, a, words)]
    return kept[:n]


def one_run(cfg: RwkuBenchConfig, target: int, seed: int, base: str, neighbourhood: int = 0, auto: bool = True) -> dict:
    t0 = time.time()
    forget, retain, info = method_data(cfg, "ulmr", target, base, cfg.out, seed)
    subject, _ = forget_texts(_folder(cfg.data, target), cfg.limit_train)
    if neighbourhood:
        extra = neighbourhood_rows(base, forget, subject, neighbourhood,
                                   cfg.out / "work" / f"t{target}-seed{seed}-neighbourhood")
        retain = [*(retain or []), *extra]
        info = {**info, "neighbourhood": [{"question": r.question, "answer": r.answer} for r in extra]}
    probes = probe_items(cfg, target, base, generation_dir(cfg.out / "work", target, seed), seed) if auto else []
    anchor = anchor_rows(cfg, target, base, subject)
    tcfg = _train_config(cfg, "ulmr", seed, cfg.max_steps or -1)
    model, tok, res = common.train_model(base, forget, retain, tcfg, cfg.out / "work" / f"t{target}-seed{seed}-train")
    t_train = time.time()
    points = sweep(model, tok, base_weights_dir(base), AUTO_ALPHAS, probes, anchor) if auto else []
    alpha, rule = select_alpha(points) if auto else (None, None)
    t_sweep = time.time()
    interp, evals = Interpolator(model, base_weights_dir(base)), {}
    for a in sorted({FIXED, *EXTRA} | ({alpha} if auto else set())):
        interp.set(a)
        evals[f"{a:g}"] = evaluate(model, tok, cfg, target)
    return {"target": target, "seed": seed, "auto_alpha": alpha, "rule": rule, "sweep": [p.as_dict() for p in points],
            "rwku": evals, "probe_items": len(probes), "anchor_items": len(anchor), "training": curves.training_record(res, info),
            "seconds": {"data_and_training": round(t_train - t0, 1), "auto_sweep": round(t_sweep - t_train, 1),
                        "rwku_evaluations": round(time.time() - t_sweep, 1)}}


def report(cfg: RwkuBenchConfig, run_dir: Path, out: Path, targets: list[int], seeds: list[int]) -> None:
    store = StageStore(run_dir / "stages" / f"before-{before_key(cfg)}")
    befores = [store.get(f"t{t}/before") for t in targets]
    view = selection_view(cfg.model_copy(update={"targets": targets}), befores)
    keys = ("forget.All", "neighbor.All", "Easy", "over_refusal")
    print(f"| seed | α rule | α per target | {' | '.join(keys)} (report half, mean over targets) |")
    print("|---|---|---|---|---|---|---|")
    _, before = curves.half_metrics(merge_targets(befores, targets), view)
    print(f"| - | Before | - | {cells(before, keys)} |")
    for s in seeds:
        runs = [json.loads((out / f"t{t}-seed{s}.json").read_text()) for t in targets]
        rules = [("fixed 0.4", lambda r: f"{FIXED:g}"), ("0.2", lambda r: "0.2"), ("0.3", lambda r: "0.3")]
        if all(r["auto_alpha"] is not None for r in runs):
            rules.append(("auto", lambda r: f"{r['auto_alpha']:g}"))
        for name, pick in rules:
            pts = [r["rwku"][pick(r)] for r in runs]
            _, rep = curves.half_metrics(merge_targets(pts, targets), view)
            print(f"| {s} | {name} | {' / '.join(pick(r) for r in runs)} | {cells(rep, keys)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--targets", default="111,106,31")
    ap.add_argument("--seeds", default="2")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--neighbourhood", type=int, default=0, help="N neighbourhood questions on ULMR's retain side (module docstring)")
    ap.add_argument("--skip-auto", action="store_true", help="no --alpha auto sweep: evaluate the fixed α values only")
    args = ap.parse_args()
    settings = json.loads((args.run_dir / "results.json").read_text(encoding="utf-8"))["settings"]
    cfg = RwkuBenchConfig(**{**settings, "out": args.out})
    if not (args.run_dir / "stages" / stage_key(cfg)).is_dir():
        sys.exit(f"{args.run_dir}: no stages under the key of its own settings ({stage_key(cfg)}); not a curves run of this code")
    targets, seeds = [int(t) for t in args.targets.split(",")], [int(s) for s in args.seeds.split(",")]
    base = cached_model_dir(cfg.model)
    for s in seeds:
        for t in targets:
            path = args.out / f"t{t}-seed{s}.json"
            if not args.report_only and not path.exists():
                src, dst = generation_dir(args.run_dir / "work", t, s), generation_dir(args.out / "work", t, s)
                if src.exists() and not dst.exists():
                    shutil.copytree(src, dst)
                print(f"target {t} seed {s}: running", flush=True)
                write_json(path, one_run(cfg, t, s, base, args.neighbourhood, auto=not args.skip_auto))
    report(cfg, args.run_dir, args.out, targets, seeds)


if __name__ == "__main__":
    main()
