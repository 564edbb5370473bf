"""Benchmark the batched evaluation engines against per-item loops on the embedded model.

Compares (1) batched greedy generation vs one ``generate`` call per item, (2) batched answer log-likelihood
vs one forward per item, (3) ``slice_logits`` on/off (vocabulary projection on the answer positions only vs all).
Prints a table and writes docs/results/eval_engines.md.

    python bench/eval_engines.py [--n 40] [--max-new-tokens 32] [--batch-size 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tofu" / "forget10_perturbed.jsonl"


def engine_inputs(tokenizer, n: int) -> tuple[list[list[int]], list]:
    """The first ``n`` TOFU forget10 items as generation prompts (token ids) and encoded answers to score
    (the answer and its paraphrase per item); shared with bench/eval_batching.py."""
    from ulmr.data.chat import ChatFormat

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").split("\n") if line.strip()][:n]
    cf = ChatFormat(tokenizer)
    prompts = [cf.prompt_ids(r["question"]) for r in rows]
    encs = [cf.encode(r["question"], a) for r in rows for a in [r["answer"], r["paraphrased_answer"]]]
    return prompts, encs


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=40, help="TOFU forget10 items")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "eval_engines.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from ulmr.atomic import write_text
    from ulmr.inference import generate, score
    from ulmr.models import load

    model, tok = load(args.model)
    prompts, encs = engine_inputs(tok, args.n)
    pad = tok.pad_token_id
    mnt, bs = args.max_new_tokens, args.batch_size

    results = []
    t_gen_loop, loop_out = timed(lambda: [generate(model, tok, [p], mnt, 1)[0] for p in prompts])
    t_gen_batch, batch_out = timed(lambda: generate(model, tok, prompts, mnt, bs))
    same = sum(a == b for a, b in zip(loop_out, batch_out))
    results.append(("generation", f"{len(prompts)} prompts, <= {mnt} new tokens", t_gen_loop, t_gen_batch, f"{same}/{len(prompts)} identical texts"))

    t_sc_loop, loop_sc = timed(lambda: [score(model, [e], pad, 1)[0] for e in encs])
    t_sc_batch, batch_sc = timed(lambda: score(model, encs, pad, bs))
    err = max(abs(a.mean_nll - b.mean_nll) for a, b in zip(loop_sc, batch_sc))
    results.append(("log-likelihood", f"{len(encs)} answers", t_sc_loop, t_sc_batch, f"max |Δ mean NLL| {err:.1e}"))

    t_full, full_sc = timed(lambda: score(model, encs, pad, bs, slice_logits=False))
    t_slice, slice_sc = timed(lambda: score(model, encs, pad, bs, slice_logits=True))
    err2 = max(abs(a.mean_nll - b.mean_nll) for a, b in zip(full_sc, slice_sc))
    results.append(("slice_logits (batched)", f"{len(encs)} answers", t_full, t_slice, f"max |Δ mean NLL| {err2:.1e}"))

    header = "| engine | workload | baseline (s) | batched/optimised (s) | speed-up | check |\n|---|---|---|---|---|---|\n"
    body = "".join(f"| {a} | {w} | {b:.1f} | {c:.1f} | {b / c:.1f}x | {chk} |\n" for a, w, b, c, chk in results)
    cmd = "python " + " ".join(sys.argv)
    notes = (
        "Baselines: generation and log-likelihood = one engine call per item (batch size 1); "
        "slice_logits = the same batched scoring with the vocabulary projection on every position.\n"
        f"Machine: {platform.machine()}, torch {torch.__version__}, {args.threads} threads; shared CPU "
        "(other jobs were running, so absolute times are noisy; the ratios are what matter).\n"
    )
    md = (f"# Evaluation engines: batched vs per-item\n\nCommand: `{cmd}`  \nDate: {dt.datetime.now().isoformat(timespec='minutes')}  \n"
          f"Model: {args.model}, TOFU forget10 items: {len(prompts)}, batch size {bs}\n\n{header}{body}\n{notes}")
    print(header + body)
    write_text(args.out, md)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
