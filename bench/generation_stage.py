"""Throughput of the generation stage (rewrites + negative responses, local backend) by batch size.

Builds D_fr for the same forget items once per batch size, without a cache, and reports items/s, D_fr
rows/s and generation calls (attempts, including regenerations after rejected outputs).

usage: python bench/generation_stage.py [--items 10] [--batch-sizes 4,8,16,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

import torch  # noqa: E402

from ulmr.data.records import load_qa  # noqa: E402
from ulmr.generate.backends import LocalBackend  # noqa: E402
from ulmr.generate.restructure import GenerateConfig, restructure  # noqa: E402
from ulmr.models import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--batch-sizes", default="4,8,16,32")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tofu/forget01.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/perf_generation_stage.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = load_qa(args.data)[: args.items]
    model, tok = load(args.model)
    backend = LocalBackend(model, tok)
    rows = []
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        t = time.perf_counter()
        res = restructure(records, backend, GenerateConfig(batch_size=bs), cache_path=None)
        s = time.perf_counter() - t
        rows.append({"batch_size": bs, "seconds": round(s, 1), "items_per_s": round(len(records) / s, 3),
                     "d_fr_rows_per_s": round(len(res.rows) / s, 3), "d_fr_rows": len(res.rows), "stats": res.stats})
        print(f"batch {bs:>3}: {s:7.1f} s  {len(records) / s:.3f} items/s  {len(res.rows) / s:.3f} rows/s  {res.stats}", flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "items": len(records), "threads": args.threads,
           "runs": rows, "command": f"python bench/generation_stage.py --items {args.items} --batch-sizes {args.batch_sizes} --threads {args.threads}"}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
