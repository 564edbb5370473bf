"""Length-grouped training batches (``--group-by-length``) vs the default random order.

Two figures, both on TOFU forget10 rows paired with retain90 rows (GradDiff's row shape: a forget
part and a retain part per row):

1. padding: the share of padded positions per part, random vs grouped batches (forget part grouped
   only, and with the retain rows re-paired by length as ``--group-by-length`` does), over several
   seeds and two set sizes (no model needed; exact counts);
2. time: one epoch of GradDiff on the embedded model over the same rows, random vs grouped, run
   interleaved, medians of ``--repeats``; same rows and non-padding tokens, so the ratio is the gain.

usage: python bench/length_grouping.py [--rows 64] [--repeats 2] [--threads 2]
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

import torch  # noqa: E402
from transformers.trainer_pt_utils import LengthGroupedSampler  # noqa: E402

from ulmr.data.chat import ChatFormat  # noqa: E402
from ulmr.data.records import load_qa  # noqa: E402
from ulmr.methods import get_method  # noqa: E402
from ulmr.models import load  # noqa: E402
from ulmr.train import TrainConfig, train_unlearn  # noqa: E402
from ulmr.training.data import RowDataset, build_rows, match_retain_lengths  # noqa: E402


def padding_share(rows: list[dict], order: list[int], batch_size: int) -> dict[str, float]:
    """Padded positions / all positions per part when ``rows`` are batched in ``order``."""
    out = {}
    for part in ("forget", "retain"):
        pad = real = 0
        for b in range(0, len(order), batch_size):
            lens = [len(rows[i][part].input_ids) for i in order[b : b + batch_size]]
            real += sum(lens)
            pad += len(lens) * max(lens) - sum(lens)
        out[part] = pad / (pad + real)
    return out


def padding_figures(fmt: ChatFormat, forget, retain, sizes: list[int], seeds: int, batch_size: int) -> dict:
    method = get_method("graddiff")
    res = {}
    for n in sizes:
        per = {"random": [], "grouped_forget_only": [], "grouped": []}
        for seed in range(seeds):
            rows = build_rows(method, fmt, forget[:n], retain, seed)
            g = torch.Generator().manual_seed(seed)
            per["random"].append(padding_share(rows, torch.randperm(len(rows), generator=g).tolist(), batch_size))
            sampler = LengthGroupedSampler(batch_size, lengths=RowDataset(rows).lengths(), generator=torch.Generator().manual_seed(seed))
            order = list(sampler)
            per["grouped_forget_only"].append(padding_share(rows, order, batch_size))
            matched = [dict(r) for r in rows]
            match_retain_lengths(matched, [[r["retain"] for r in rows]])  # what --group-by-length does
            per["grouped"].append(padding_share(matched, order, batch_size))
        res[str(n)] = {mode: {part: round(statistics.mean(s[part] for s in shares), 3) for part in ("forget", "retain")}
                       for mode, shares in per.items()}
    return res


def timed_epoch(forget, retain, grouped: bool, batch_size: int, threads: int) -> dict:
    model, tok = load("smollm2-135m")
    cfg = TrainConfig(method="graddiff", epochs=1, lr=1e-5, batch_size=batch_size, checkpoint_steps=0, num_threads=threads,
                      group_by_length=grouped)
    with tempfile.TemporaryDirectory() as d:
        res = train_unlearn(model, tok, forget, retain, cfg, Path(d))
    return {"seconds": round(res.seconds, 1), "steps": res.steps, "tokens": res.train_tokens,
            "tokens_per_s": round(res.train_tokens / res.seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/tofu"))
    ap.add_argument("--rows", type=int, default=64, help="forget rows of the timed epoch")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the padding figure")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/results/perf_length_grouping.json")
    args = ap.parse_args()
    forget = load_qa(Path(args.data) / "forget10.jsonl")
    retain = load_qa(Path(args.data) / "retain90.jsonl")
    _, tok = load("smollm2-135m")
    padding = padding_figures(ChatFormat(tok), forget, retain, [args.rows, len(forget)], args.seeds, args.batch_size)
    print(json.dumps({"padding_share": padding}, indent=2), flush=True)
    runs: dict[str, list[dict]] = {"random": [], "grouped": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        for mode in runs:
            runs[mode].append(timed_epoch(forget[: args.rows], retain, mode == "grouped", args.batch_size, args.threads))
            print(mode, runs[mode][-1], flush=True)
    med = {mode: round(statistics.median(r["seconds"] for r in rs), 2) for mode, rs in runs.items()}
    out = {
        "date": time.strftime("%Y-%m-%d"), "batch_size": args.batch_size, "rows": args.rows,
        "padding_share": padding, "runs": runs, "median_seconds": med,
        "speedup_grouped": round(med["random"] / med["grouped"], 3),
        "command": f"python bench/length_grouping.py --rows {args.rows} --repeats {args.repeats} --threads {args.threads}",
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("date", "median_seconds", "speedup_grouped")}, indent=2))


if __name__ == "__main__":
    main()
