"""Join the methods of several `ulmr bench rwku` curves runs into one set of outputs, without rerunning them.

usage: python bench/combine_rwku.py RUN_DIR OTHER/results.json [...] --out DIR

RUN_DIR is a run whose stage files are still there (its Before stages give the reference row, the split and
the selection rule's thresholds); each OTHER results.json adds its methods (curve, selected point, training)
as it stored them. A method's summary depends only on its own curve and on Before, so joining is exact when
every run used the same settings apart from --methods, --out, --seeds and --seed-methods and evaluated Before
alike; both are checked as `--curves-from` checks them (Before to 1e-4 relative), and the script exits 1
otherwise. Methods rerun at several seeds keep their seeds; the table note says which. This is for a lost stage
directory: while stages survive, rerunning the bench with every method into one --out reuses them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ulmr.benchmarks import curves
from ulmr.benchmarks.common import StageStore
from ulmr.benchmarks.rwku_bench import BENCH, RwkuBenchConfig, before_key, before_reference, write_curves
from ulmr.errors import ConfigError
from ulmr.methods.registry import method_names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("others", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.time()
    run = json.loads((args.run_dir / "results.json").read_text(encoding="utf-8"))
    others = [json.loads(p.read_text(encoding="utf-8")) for p in args.others]
    try:  # the checks of --curves-from: same settings, and (below) the same Before
        priors = [curves.Prior.load(p, run["settings"]) for p in args.others]
    except ConfigError as e:
        sys.exit(str(e))
    methods = {**{n: s for o in others for n, s in o["methods"].items()}, **run["methods"]}
    order = {m: i for i, m in enumerate(method_names(BENCH))}
    methods = dict(sorted(methods.items(), key=lambda kv: order.get(kv[1]["method"], len(order))))
    seeds = {s["method"]: len(s["selected"].get("seeds", [0])) for s in methods.values()}
    n_seeds = max(seeds.values())
    cfg = RwkuBenchConfig(**{**run["settings"], "out": args.out, "methods": list(seeds), "seeds": n_seeds,
                             "seed_methods": [m for m, n in seeds.items() if n > 1] if n_seeds > 1 else None})
    store = StageStore(args.run_dir / "stages" / f"before-{before_key(cfg)}")
    befores = [store.get(f"t{t}/before") for t in cfg.targets]
    if any(b is None for b in befores):
        sys.exit(f"{store.root}: Before stages missing for targets {cfg.targets}")
    refs = before_reference(cfg, befores)
    try:
        for prior in priors:
            prior.check_references(refs)
    except ConfigError as e:
        sys.exit(str(e))
    timings = {k: v for r in (*others, run) for k, v in r["timings"].items() if not k.startswith("total")}
    timings["total, this invocation"] = {"seconds": round(time.time() - t0, 1), "reused": False}
    stages = "; ".join([run["stages"], *(o["stages"] for o in others)])
    print(f"joining {', '.join(methods)} (Before as in {args.run_dir}, matched by {', '.join(map(str, args.others))})")
    write_curves(cfg, befores, methods, timings, stages, refs=refs)

if __name__ == "__main__":
    main()
