"""Before/after figures for two evaluation choices in ``ulmr.inference``: length-sorted batches (vs the
input order, shuffled) and ``torch.inference_mode`` (vs ``torch.no_grad``), on batched answer scoring and
batched greedy generation with the embedded model. One warm-up call, then the settings alternate; medians
of --repeats.

    python bench/eval_batching.py [--n 40] [--batch-size 20] [--max-new-tokens 32] [--repeats 2] [--threads 2]

The "before" settings exist only here: the bench swaps ``inference._batches`` for one that shuffles the order
first, and ``torch.inference_mode`` for ``torch.no_grad``, around the same engine calls.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def setting(inference, sort: bool, inference_mode: bool):
    """Patch the inference module for one setting: unsorted batches and/or no_grad instead of inference_mode."""
    batches, mode = inference._batches, torch.inference_mode
    if not sort:
        rng = random.Random(0)
        inference._batches = lambda order, bs: batches(rng.sample(order, len(order)), bs)
    if not inference_mode:
        torch.inference_mode = torch.no_grad
    try:
        yield
    finally:
        inference._batches, torch.inference_mode = batches, mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=40, help="TOFU forget10 items (2 answers scored per item)")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "perf_eval_batching.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from eval_engines import engine_inputs  # bench/ is on sys.path when this script runs

    from ulmr import inference
    from ulmr.models import load

    model, tok = load(args.model)
    prompts, encs = engine_inputs(tok, args.n)
    settings = {"sorted + inference_mode (shipped)": (True, True), "input order shuffled": (False, True),
                "no_grad instead of inference_mode": (True, False)}
    tasks = {
        "scoring": lambda: inference.score(model, encs, tok.pad_token_id, args.batch_size),
        "generation": lambda: inference.generate(model, tok, prompts, args.max_new_tokens, args.batch_size),
    }
    times: dict[str, dict[str, list[float]]] = {t: {s: [] for s in settings} for t in tasks}
    outputs: dict[str, dict[str, object]] = {t: {} for t in tasks}
    for fn in tasks.values():  # warm-up: the first calls pay for allocator and kernel set-up
        fn()
    for _ in range(args.repeats):
        for name, (sort, mode) in settings.items():
            for task, fn in tasks.items():
                with setting(inference, sort, mode):
                    t0 = time.perf_counter()
                    outputs[task][name] = fn()
                    times[task][name].append(round(time.perf_counter() - t0, 2))
                print(f"{task:10s} {name:36s} {times[task][name][-1]:.1f} s", flush=True)
    shipped = next(iter(settings))
    result = {}
    for task in tasks:
        med = {s: round(statistics.median(v), 2) for s, v in times[task].items()}
        result[task] = {"seconds": times[task], "median_s": med,
                        "shipped_speedup": {s: round(med[s] / med[shipped], 3) for s in settings if s != shipped}}
    ref = outputs["scoring"][shipped]
    result["scoring"]["max_abs_nll_diff"] = {
        s: max(abs(a - b) for a, b in zip(_nlls(ref), _nlls(outputs["scoring"][s]))) for s in settings if s != shipped}
    result["generation"]["identical_texts"] = {
        s: sum(a == b for a, b in zip(outputs["generation"][shipped], outputs["generation"][s])) for s in settings if s != shipped}
    out = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "n": args.n, "batch_size": args.batch_size,
           "threads": args.threads, "repeats": args.repeats, "results": result,
           "command": f"python bench/eval_batching.py --n {args.n} --batch-size {args.batch_size} --max-new-tokens "
                      f"{args.max_new_tokens} --repeats {args.repeats} --threads {args.threads}"}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({t: {k: v for k, v in r.items() if k != "seconds"} for t, r in result.items()}, indent=2))


def _nlls(scored) -> list[float]:
    """Mean answer NLL of each scored example."""
    return [s.mean_nll for s in scored]


if __name__ == "__main__":
    main()
