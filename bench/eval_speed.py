"""Evaluation speed before and after the changes of issue 24, side by side in one process.

Runs one TOFU mini evaluation (forget 40, retain 40, real authors 50, world facts 50, 64 new tokens) or one
RWKU evaluation (``--limit 30``) of the same model twice: "before" as the code stood when the issue was filed
(every answer re-reads its prompt: ``score(share_prefixes=False)``; replies from ``model.generate`` in batches of
the scoring batch size) and "now" (the answers of one prompt scored as one token trie; the greedy loop of
ulmr.decoding in batches of ``generation_batch``). Prints the wall times, the time inside generation and scoring, and the largest
difference over every metric and per-item value; writes the same as JSON.

    python bench/eval_speed.py --benchmark tofu [--threads 2] [--out docs/results/perf_eval_speed_tofu.json]
    python bench/eval_speed.py --benchmark rwku --limit 30
    python bench/eval_speed.py --benchmark tofu --scoring-only   # the part that changed: 960 scored answers
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import platform
import time
from pathlib import Path
from typing import Any, Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOFU_LIMITS = {"forget": 40, "retain": 40, "real_authors": 50, "world_facts": 50}
# Every module that calls the scorer or the generator imports it by name: patch each one.
CALLERS = ("ulmr.eval.qa", "ulmr.eval.rwku", "ulmr.metrics.mcq", "ulmr.metrics.mia", "ulmr.eval.utility")


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a result dict, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, float(obj)


def texts(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every generated reply of a result dict, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from ([(f"{path}.{k}", v)] if k == "generated" and isinstance(v, str) else texts(v, f"{path}.{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from texts(v, f"{path}[{i}]")


def differing_texts(a: dict, b: dict) -> tuple[int, int]:
    """How many generated replies differ between two results, of how many."""
    ta, tb = dict(texts(a)), dict(texts(b))
    return sum(ta[k] != tb[k] for k in ta.keys() & tb.keys()), len(ta.keys() & tb.keys())


def max_difference(a: dict, b: dict, relative: bool = False) -> tuple[float, str, int]:
    """Largest |a - b| (or |a - b| / max(|a|, |b|) with ``relative``) over the numeric leaves both hold
    (inf when one is NaN and the other not), its path, and how many leaves were compared."""
    da, db = dict(leaves(a)), dict(leaves(b))
    worst, where = 0.0, ""
    for k in da.keys() & db.keys():
        x, y = da[k], db[k]
        if math.isnan(x) and math.isnan(y) or x == y:
            continue
        d = abs(x - y) if not (math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y)) else math.inf
        if relative and math.isfinite(d):
            d /= max(abs(x), abs(y))
        if d > worst:
            worst, where = d, k
    return worst, where, len(da.keys() & db.keys())


def metrics_of(benchmark: str, result: dict[str, Any]) -> dict[str, Any]:
    """The reported metrics without per-item records (TOFU scoring-only: the per-set means of the scores)."""
    if "sets" not in result and benchmark == "tofu":
        from ulmr.eval.qa import summarize_set

        items = result["items"]
        sets, pos = {}, 0
        for name, k in TOFU_LIMITS.items():
            sets[name] = {m: v for m, v in summarize_set(name, items[pos : pos + k]).items() if m in ("prob", "truth_ratio")}
            pos += k
        return sets
    return {k: v for k, v in result.items() if k != "items"}


def instrument(now: bool, clock: dict[str, float]) -> None:
    """Point every caller's ``score``/``generate`` at timed wrappers of the "now" or the "before" code."""
    import importlib

    from ulmr import decoding, inference

    def timed(fn, key):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                clock[key] = clock.get(key, 0.0) + time.perf_counter() - t0
        return wrapper

    def before_generate(model, tok, prompts, max_new_tokens=64, batch_size=32, *a, **kw):
        return inference.generate(model, tok, prompts, max_new_tokens, batch_size // inference.GENERATION_BATCH_FACTOR, *a, **kw)

    inference.plain_decoding_supported = decoding.plain_decoding_supported if now else (lambda model, sample=False: False)
    score = timed(functools.partial(inference.score, share_prefixes=now), "scoring_s")
    generate = timed(inference.generate if now else before_generate, "generation_s")
    for name in CALLERS:
        module = importlib.import_module(name)
        for attr, fn in (("score", score), ("generate", generate)):
            if hasattr(module, attr):
                setattr(module, attr, fn)


def evaluate(benchmark: str, model, tok, args) -> dict[str, Any]:
    if benchmark == "tofu" and args.scoring_only:
        from ulmr.data.tofu import load_tofu
        from ulmr.eval.qa import QAItem, run_items

        sets = load_tofu(args.data or SHARED / "tofu", "forget01")
        items = [QAItem(it.question, it.answer, it.paraphrased, it.perturbed) for n, k in TOFU_LIMITS.items() for it in sets[n][:k]]
        return {"items": run_items(model, tok, items, batch_size=args.batch_size, generate_answers=False)}
    if benchmark == "tofu":
        from ulmr.eval.tofu import evaluate_tofu

        return evaluate_tofu(model, tok, args.data or SHARED / "tofu", "forget01", limits=TOFU_LIMITS,
                             max_new_tokens=64, batch_size=args.batch_size)
    from ulmr.eval.rwku import evaluate_rwku

    return evaluate_rwku(model, tok, args.data or SHARED / "rwku", target=args.target, limit=args.limit,
                         batch_size=args.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", choices=["tofu", "rwku"], default="tofu")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default=None, help="benchmark data directory (default ../shared/data/<benchmark>)")
    ap.add_argument("--target", type=int, default=1, help="RWKU target")
    ap.add_argument("--limit", type=int, default=30, help="RWKU items per probe set")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scoring-only", action="store_true", help="TOFU: score the 960 answers only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ulmr.atomic import write_json
    from ulmr.models import load

    model, tok = load(args.model)
    runs: dict[str, dict[str, Any]] = {}
    for label, now in (("before", False), ("now", True)):
        clock: dict[str, float] = {}
        instrument(now, clock)
        t0 = time.perf_counter()
        result = evaluate(args.benchmark, model, tok, args)
        runs[label] = {"wall_s": time.perf_counter() - t0, **clock, "result": result}
    today, shared = runs["before"]["result"], runs["now"]["result"]
    diff, where, n = max_difference(metrics_of(args.benchmark, today), metrics_of(args.benchmark, shared))
    item_diff, item_where, _ = max_difference(today, shared, relative=True)
    old, new = runs["before"]["wall_s"], runs["now"]["wall_s"]
    changed, replies = differing_texts(today, shared)
    print(f"{args.benchmark} evaluation of {args.model}, {args.threads} threads:")
    for label, r in runs.items():
        print(f"  {label:15s} {r['wall_s']:7.1f} s  (generation {r.get('generation_s', 0):6.1f} s, "
              f"scoring {r.get('scoring_s', 0):6.1f} s)")
    print(f"  speed-up {old / new:.2f}x; largest metric difference over {n} metrics: {diff:.2e} ({where or '-'}); "
          f"largest relative difference of any per-item value: {item_diff:.2e} ({item_where or '-'}); "
          f"generated replies that differ: {changed} of {replies}")
    out = Path(args.out or ROOT / "docs" / "results" / f"perf_eval_speed_{args.benchmark}.json")
    write_json(out, {
        "command": "python bench/eval_speed.py " + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items() if v not in (None, False) and k != "out"),
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "runs": {k: {m: v for m, v in r.items() if m != "result"} for k, r in runs.items()},
        "speedup": old / new, "max_metric_difference": diff, "max_metric_difference_at": where, "metrics_compared": n,
        "max_item_relative_difference": item_diff, "max_item_relative_difference_at": item_where,
        "differing_replies": changed, "replies": replies,
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
