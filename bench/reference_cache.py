"""DPO and NPO with the reference log-probs precomputed once per item (the shipped path) vs a live frozen
reference model run on every step: wall time of the whole training call (precomputation and the model
copy included) and the largest difference between the two runs' per-step losses.

usage: python bench/reference_cache.py [--methods dpo,npo] [--items 16] [--epochs 2] [--repeats 2] [--threads 2]
The two settings alternate (cached, live, cached, live, ...) so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

import torch  # noqa: E402

from ulmr.data.records import load_qa  # noqa: E402
from ulmr.methods.registry import METHODS  # noqa: E402
from ulmr.models import load  # noqa: E402
from ulmr.train import TrainConfig, train_unlearn  # noqa: E402

TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def live_reference_variant(name: str) -> str:
    """Register ``<name>_live``: the same loss, but reference log-probs from a frozen model on every step."""
    base = METHODS[name]
    live = type(f"{base.__name__}LiveRef", (base,), {"name": f"{name}_live", "needs_ref_model": True, "ref_logp_parts": ()})
    METHODS[live.name] = live
    return live.name


def run(model, tok, forget, retain, method: str, epochs: float, threads: int) -> tuple[float, list[float], int]:
    cfg = TrainConfig(method=method, epochs=epochs, checkpoint_steps=0, logging_steps=1, num_threads=threads, keep_checkpoints=False)
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        res = train_unlearn(copy.deepcopy(model), tok, forget, retain, cfg, Path(d))
        wall = time.perf_counter() - start
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    return wall, losses, res.steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="dpo,npo")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default=str(TOFU))
    ap.add_argument("--out", default="docs/results/perf_reference_cache.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load(args.model)
    forget = load_qa(Path(args.data) / "forget01.jsonl", limit=args.items)
    retain = load_qa(Path(args.data) / "retain90.jsonl", limit=args.items)
    results = {}
    for name in args.methods.split(","):
        live = live_reference_variant(name)
        walls: dict[str, list[float]] = {"cached": [], "live": []}
        losses: dict[str, list[float]] = {}
        steps = 0
        for _ in range(args.repeats):
            for label, method in (("cached", name), ("live", live)):
                wall, loss, steps = run(model, tok, forget, retain, method, args.epochs, args.threads)
                walls[label].append(round(wall, 1))
                losses[label] = loss
                print(f"{name} {label}: {wall:.1f} s, {steps} steps", flush=True)
        med = {k: round(statistics.median(v), 1) for k, v in walls.items()}
        results[name] = {
            "steps": steps, "wall_s": walls, "median_s": med,
            "speedup_cached_over_live": round(med["live"] / med["cached"], 2),
            "max_abs_loss_diff": max(abs(a - b) for a, b in zip(losses["cached"], losses["live"])),
            "losses_cached": losses["cached"], "losses_live": losses["live"],
        }
    out = {
        "date": time.strftime("%Y-%m-%d"), "model": args.model, "items": args.items, "epochs": args.epochs,
        "threads": args.threads, "repeats": args.repeats, "results": results,
        "command": f"python bench/reference_cache.py --methods {args.methods} --items {args.items} --epochs {args.epochs:g} "
                   f"--repeats {args.repeats} --threads {args.threads}",
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: cached {r['median_s']['cached']} s vs live {r['median_s']['live']} s -> "
              f"{r['speedup_cached_over_live']}x; max |loss diff| {r['max_abs_loss_diff']:.2e} over {r['steps']} steps")


if __name__ == "__main__":
    main()
