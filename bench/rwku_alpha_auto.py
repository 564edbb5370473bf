"""Ablation: ULMR on RWKU with α chosen per run by `--alpha auto` instead of the bench's fixed selected α.

usage: python bench/rwku_alpha_auto.py RUN_DIR --targets 111,106,31 --seeds 2 --out DIR

RUN_DIR is a `ulmr bench rwku` curves run (its settings, Before stages and, where present, its D_fr generation
caches are reused). For each target and seed this trains ULMR's p_f exactly as the bench does (same data, recipe
and seed; the run's stage key must match these settings), then

- runs the `--alpha auto` sweep of `ulmr unlearn` (:func:`ulmr.sweep.sweep` over ``AUTO_ALPHAS`` on the run's
  held-out probe rewrites, the built-in anchor answered by the base model, the easy utility set) and takes
  :func:`ulmr.sweep.select_alpha`'s α: what the tool chooses without seeing any RWKU evaluation item;
- evaluates RWKU (the bench's `evaluate`) at the bench's fixed α (0.4), at 0.2 and 0.3, and at the auto α.

One JSON per (target, seed) in DIR (resumable: done pairs are skipped); then the report half of each α rule,
merged over targets as the bench merges them, per seed, as a Markdown table on stdout.

``--neighbourhood N`` (a candidate, not a default; use another DIR): ULMR's retain side also gets N questions "Tell me
about E." with the base model's greedy answers, for the N entities its D_fr rows name most often besides the subject
(entities named in at least half of the forget questions, and their parts). Built from the forget side only, no
evaluation item is read; but these rows name what RWKU's neighbour probes name, which the bench's anchor filter
forbids, so a table with them must say so (and give GradDiff and KL the same rows for a fair comparison).
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

from ulmr.anchor import _trim_to_sentence
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
    """The held-out probe rewrites of the run's generation stage (the same cache method_data fills)."""
    model, tok = load(base)
    records = reject_records(_folder(cfg.data, target), cfg.limit_train, model, tok, cfg.answer_tokens, cfg.eval_batch_size)
    gen = GenerateConfig(seed=seed, max_new_tokens=cfg.gen_max_new_tokens, gen_batch_size=cfg.eval_batch_size,
                         filters=method_class("ulmr").generation_filters)
    res = run_generation(gen, records, make_backend(BackendConfig(), model, tok), work)
    return [QARecord(p["question"], p["answer"]) for p in res.probes]


def neighbourhood_entities(rows: list[dict], n: int) -> list[str]:
    """The ``n`` entities (capitalised runs with a word of 3+ letters) D_fr's rows name most often, without the
    subject: those named in at least half of the original forget questions, and runs made of their words."""
    questions = list({r["question"]: None for r in rows if r.get("variant") == "original"})
    in_questions = Counter(e for q in questions for e in set(capitalised_runs(q)))
    subject = {e for e, c in in_questions.items() if c >= len(questions) / 2}
    subject_words = {w.lower() for e in subject for w in e.split()}
    texts = [str(r.get(k) or "") for r in rows for k in ("question", "answer", "original_answer")]
    counts = Counter(e for t in texts for e in capitalised_runs(t)
                     if re.search(r"[A-Za-z]{3}", e) and not {w.lower() for w in e.split()} <= subject_words)
    return [e for e, _ in counts.most_common(n)]


def neighbourhood_rows(base: str, rows: list[dict], n: int, work: Path) -> list[QARecord]:
    """The base model's greedy answers to "Tell me about E." for :func:`neighbourhood_entities` (degenerate,
    repetitive answers dropped)."""
    model, tok = load(base)
    questions = [f"Tell me about {e}." for e in neighbourhood_entities(rows, n)]
    answers, _ = cached_answers(model, tok, questions, work / "neighbourhood.jsonl", batch_size=16,
                                description="neighbourhood answers", post=_trim_to_sentence)
    return [QARecord(q, a) for q, a in zip(questions, answers) if a and not repetitive(a)]


def one_run(cfg: RwkuBenchConfig, target: int, seed: int, base: str, neighbourhood: int = 0) -> dict:
    t0 = time.time()
    forget, retain, info = method_data(cfg, "ulmr", target, base, cfg.out, seed)
    if neighbourhood:
        extra = neighbourhood_rows(base, forget, neighbourhood, cfg.out / "work" / f"t{target}-seed{seed}-neighbourhood")
        retain = [*(retain or []), *extra]
        info = {**info, "neighbourhood": [{"question": r.question, "answer": r.answer} for r in extra]}
    probes = probe_items(cfg, target, base, generation_dir(cfg.out / "work", target, seed), seed)
    subject, _ = forget_texts(_folder(cfg.data, target), cfg.limit_train)
    anchor = anchor_rows(cfg, target, base, subject)
    tcfg = _train_config(cfg, "ulmr", seed, cfg.max_steps or -1)
    model, tok, res = common.train_model(base, forget, retain, tcfg, cfg.out / "work" / f"t{target}-seed{seed}-train")
    t_train = time.time()
    points = sweep(model, tok, base_weights_dir(base), AUTO_ALPHAS, probes, anchor)
    alpha, rule = select_alpha(points)
    t_sweep = time.time()
    interp, evals = Interpolator(model, base_weights_dir(base)), {}
    for a in sorted({FIXED, *EXTRA, alpha}):
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
        for name, pick in (("fixed 0.4", lambda r: f"{FIXED:g}"), ("0.2", lambda r: "0.2"), ("0.3", lambda r: "0.3"),
                           ("auto", lambda r: f"{r['auto_alpha']:g}")):
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
                write_json(path, one_run(cfg, t, s, base, args.neighbourhood))
    report(cfg, args.run_dir, args.out, targets, seeds)


if __name__ == "__main__":
    main()
