"""Throughput of the generation stage (rewrites + negative responses, local backend).

Builds D_fr for the same forget items once per (batch size, prefix reuse) setting, without a cache, and
reports items/s, D_fr rows/s and generation calls (attempts, including regenerations after rejected
outputs). ``--prefix-reuse off,on`` measures the shared few-shot context computed once per batch against
plain batches, side by side, ``--repeats`` times each (interleaved; medians reported), and counts the
D_fr rows that are identical between the two. ``--decoding generate,loop`` does the same for
``model.generate`` against the decoding loop of ulmr.decoding (finished rows dropped), and ``--seeds`` repeats
every setting with other generation seeds, so that the stage's statistics (attempts, rejections, fallbacks)
can be compared where the rows differ. Each run also lists its generation calls (one per batch of a round:
prompts and seconds), which shows what the retry rounds cost.

usage: python bench/generation_stage.py [--items 10] [--batch-sizes 4,8,16,32] [--prefix-reuse on]
                                        [--decoding loop] [--seeds 0] [--repeats 1] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

import torch  # noqa: E402

from ulmr import decoding, inference  # noqa: E402
from ulmr.data.records import load_qa  # noqa: E402
from ulmr.generate.backends import LocalBackend  # noqa: E402
from ulmr.generate.restructure import GenerateConfig, restructure  # noqa: E402
from ulmr.models import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class TimedBackend(LocalBackend):
    """The local backend, recording (prompts, seconds) of every call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[dict] = []

    def chat(self, conversations, *args, **kwargs):
        t = time.perf_counter()
        out = super().chat(conversations, *args, **kwargs)
        self.calls.append({"prompts": len(conversations), "seconds": round(time.perf_counter() - t, 2)})
        return out


def _row_key(row: dict) -> tuple:
    return row["source_index"], row["rewrite_id"], row["question"], row["answer"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--batch-sizes", default="4,8,16,32")
    ap.add_argument("--prefix-reuse", default="on", help="comma list of on/off")
    ap.add_argument("--decoding", default="loop", help="comma list of generate/loop")
    ap.add_argument("--seeds", default="0", help="comma list of generation seeds")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tofu/forget01.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/perf_generation_stage.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = load_qa(args.data)[: args.items]
    model, tok = load(args.model)
    settings = [(int(b), r.strip() == "on", d.strip(), int(seed)) for b in args.batch_sizes.split(",")
                for r in args.prefix_reuse.split(",") for d in args.decoding.split(",") for seed in args.seeds.split(",")]
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    for rep in range(args.repeats):
        for bs, reuse, how, seed in settings:
            backend = TimedBackend(model, tok, reuse_prefix=reuse)
            inference.plain_decoding_supported = (decoding.plain_decoding_supported if how == "loop"
                                                  else lambda model, sample=False: False)
            t = time.perf_counter()
            res = restructure(records, backend, GenerateConfig(gen_batch_size=bs, seed=seed), cache_path=None)
            s = time.perf_counter() - t
            runs[(bs, reuse, how, seed)].append({"seconds": s, "rows": [_row_key(r) for r in res.rows], "stats": res.stats,
                                                 "calls": backend.calls})
            print(f"repeat {rep} batch {bs:>3} prefix reuse {'on ' if reuse else 'off'} {how:8s} seed {seed}: {s:7.1f} s  "
                  f"{len(records) / s:.3f} items/s  attempts {res.stats['attempts']}", flush=True)
    results = []
    for (bs, reuse, how, seed), rs in runs.items():
        s = statistics.median(r["seconds"] for r in rs)
        results.append({"batch_size": bs, "prefix_reuse": reuse, "decoding": how, "seed": seed, "seconds_median": round(s, 1),
                        "seconds": [round(r["seconds"], 1) for r in rs], "items_per_s": round(len(records) / s, 3),
                        "d_fr_rows_per_s": round(len(rs[0]["rows"]) / s, 3), "d_fr_rows": len(rs[0]["rows"]),
                        "stats": rs[0]["stats"], "calls": rs[0]["calls"]})
    comparisons = []
    for a, b, label in (((True,), (False,), "prefix_reuse on vs off"), (("loop",), ("generate",), "loop vs generate")):
        for key in runs:
            other = tuple(b[0] if x == a[0] else x for x in key)
            if a[0] in key and other != key and other in runs:
                on, off = runs[key], runs[other]
                speedup = statistics.median(r["seconds"] for r in off) / statistics.median(r["seconds"] for r in on)
                same = sum(x == y for x, y in zip(on[0]["rows"], off[0]["rows"]))
                comparisons.append({"setting": list(key), "comparison": label, "speedup": round(speedup, 2),
                                    "identical_rows": same, "rows": len(off[0]["rows"])})
                print(f"{key}: {label} {speedup:.2f}x, identical D_fr rows {same}/{len(off[0]['rows'])}")
    out = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "items": len(records), "threads": args.threads,
           "repeats": args.repeats, "runs": results, "comparisons": comparisons,
           "command": "python bench/generation_stage.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
