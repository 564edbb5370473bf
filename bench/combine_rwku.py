"""Join the methods of several `ulmr bench rwku` curves runs into one set of outputs, without rerunning them.

usage: python bench/combine_rwku.py RUN_DIR OTHER/results.json [...] --out DIR

RUN_DIR is a run whose stage files are still there (its Before stages give the reference row, the split and
the selection rule's thresholds); each OTHER results.json adds its methods (curve, selected point, training)
as it stored them. A method's summary depends only on its own curve and on Before, so joining is exact when
every run used the same settings apart from --methods and --out and evaluated Before identically; both are
checked (Before to within 1e-3 on the tables' scale), and the script exits 1 otherwise. For a lost stage directory: when stages survive, rerunning the bench
with every method into one --out reuses them, which is the usual way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ulmr.benchmarks import curves
from ulmr.benchmarks.common import StageStore
from ulmr.benchmarks.rwku_bench import BENCH, RwkuBenchConfig, before_key, merge_targets, selection_view, write_curves
from ulmr.methods.registry import method_names

FREE = {"methods", "out", "seed_methods"}  # settings that may differ between the joined runs
TOL = 1e-3  # on the tables' scale (x100; they print 2 decimals): float rounding of a rerun moves MIA NLLs by ~1e-5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("others", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.time()
    run = json.loads((args.run_dir / "results.json").read_text(encoding="utf-8"))
    others = [json.loads(p.read_text(encoding="utf-8")) for p in args.others]
    settings = run["settings"]
    for path, o in zip(args.others, others):
        differ = sorted(k for k in set(settings) | set(o["settings"]) if k not in FREE and settings.get(k) != o["settings"].get(k))
        if o.get("benchmark") != "rwku" or "methods" not in o or differ:
            sys.exit(f"{path}: not a curves run of the same settings (differs in: {', '.join(differ) or 'protocol'})")
    methods = {**{n: s for o in others for n, s in o["methods"].items()}, **run["methods"]}
    order = {m: i for i, m in enumerate(method_names(BENCH))}
    methods = dict(sorted(methods.items(), key=lambda kv: order.get(kv[1]["method"], len(order))))
    cfg = RwkuBenchConfig(**{**settings, "out": args.out, "methods": [s["method"] for s in methods.values()]})
    store = StageStore(args.run_dir / "stages" / f"before-{before_key(cfg)}")
    befores = [store.get(f"t{t}/before") for t in cfg.targets]
    if any(b is None for b in befores):
        sys.exit(f"{store.root}: Before stages missing for targets {cfg.targets}")
    before = merge_targets(befores, cfg.targets)["metrics"]
    ours = curves.reference_summary(merge_targets(befores, cfg.targets), selection_view(cfg, befores), n_resamples=10)["metrics"]
    for path, o in zip(args.others, others):
        theirs = o["references"]["Before"]["metrics"]
        diffs = {k: abs((ours[k] or 0) - (theirs.get(k) or 0)) for k in ours}
        worst = max(diffs, key=diffs.get)
        print(f"{path}: Before (report half) max |diff| {diffs[worst]:.3g} ({worst}) against {args.run_dir}")
        if diffs[worst] > TOL:
            sys.exit(f"{path}: its Before differs from {args.run_dir}'s by more than {TOL:g}; rerun it instead of joining")
    timings = {k: v for r in (*others, run) for k, v in r["timings"].items() if not k.startswith("total")}
    timings["total, this invocation"] = {"seconds": round(time.time() - t0, 1), "reused": False}
    stages = "; ".join([run["stages"], *(o["stages"] for o in others)])
    print(f"Before Forget All (all items) {before['forget.All']:.4f}; joining {', '.join(methods)}")
    write_curves(cfg, befores, methods, timings, stages)


if __name__ == "__main__":
    main()
