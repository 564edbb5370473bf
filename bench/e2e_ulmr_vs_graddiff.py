"""End-to-end ULMR vs GradDiff with the same number of optimizer steps: wall-time ratio, the generation
stage's seconds and its share of ULMR's time (goals: <= 40 s and <= 30% for 10 items at 24 steps). Also reports the generation stage's
throughput (D_fr rows per second).

With ``--generator-dtypes float32,bfloat16`` each repeat runs ULMR once per generator dtype (see
``ulmr unlearn --generator-dtype``) next to the same GradDiff run, so the dtypes are compared side by
side; the top-level figures are those of the first dtype.

usage: python bench/e2e_ulmr_vs_graddiff.py [--items 10] [--steps 12] [--repeats 3] [--generator-dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

from ulmr import unlearn  # noqa: E402
from ulmr.data.records import load_qa, save_qa  # noqa: E402

KEYS = ("time_ratio_ulmr_over_graddiff", "generation_s", "generation_share_of_ulmr", "generation_rows_per_s")


def figures(u: dict, g: dict) -> dict:
    """Ratio to GradDiff, generation share and D_fr rows/s of one ULMR run."""
    gen = u["timings_s"].get("generation", 0.0)
    return {
        "time_ratio_ulmr_over_graddiff": round(u["wall_s"] / g["wall_s"], 2),
        "generation_s": round(gen, 1),
        "generation_share_of_ulmr": round(gen / u["timings_s"]["total"], 3),
        "generation_rows_per_s": round(u["counts"]["d_fr_rows"] / gen, 2) if gen else None,
    }


def one_run(data: str, items: int, steps: int, dtypes: list[str]) -> dict:
    """ULMR (once per generator dtype) then GradDiff on the first ``items`` QA of ``data``, ``steps``
    optimizer steps each."""
    with tempfile.TemporaryDirectory() as d:
        forget = Path(d) / "forget.jsonl"
        save_qa(forget, load_qa(data)[:items])
        runs = {}
        for name, method, extra in [*((f"ulmr@{t}", "ulmr", {"alpha": 0.5, "generator_dtype": t}) for t in dtypes),
                                    ("graddiff", "graddiff", {})]:
            t = time.perf_counter()
            res = unlearn("smollm2-135m", forget, Path(d) / name, method=method, max_steps=steps, **extra)
            runs[name] = {"wall_s": round(time.perf_counter() - t, 1), "timings_s": res.record["timings_s"], "counts": res.record["counts"]}
    return {"runs": runs, "by_generator_dtype": {t: figures(runs[f"ulmr@{t}"], runs["graddiff"]) for t in dtypes}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=1, help="runs of the set; the figures are their medians")
    ap.add_argument("--generator-dtypes", default="float32", help="comma-separated ULMR generator dtypes, run side by side")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/tofu/forget01.jsonl"))
    ap.add_argument("--out", default="docs/results/perf_e2e.json")
    args = ap.parse_args()
    dtypes = args.generator_dtypes.split(",")
    repeats = [one_run(args.data, args.items, args.steps, dtypes) for _ in range(args.repeats)]
    medians = {t: {k: round(statistics.median(r["by_generator_dtype"][t][k] for r in repeats), 3) for k in KEYS} for t in dtypes}
    out = {
        "date": time.strftime("%Y-%m-%d"), "items": args.items, "optimizer_steps": args.steps,
        **medians[dtypes[0]], "by_generator_dtype": medians,
        "repeats": repeats,
        "command": f"python bench/e2e_ulmr_vs_graddiff.py --items {args.items} --steps {args.steps} --repeats {args.repeats}"
                   + (f" --generator-dtypes {args.generator_dtypes}" if dtypes != ["float32"] else ""),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("date", "items", "optimizer_steps", "by_generator_dtype")}, indent=2))


if __name__ == "__main__":
    main()
