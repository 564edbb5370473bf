"""RWKU's Gen column (MMLU 5-shot, RWKU's rendering) and MIA scoring with length-budget batches vs plain batches.

Plain batches take ``batch_size`` prompts at a time in length order, so one prompt far longer than the rest (MMLU
shots vary from ~350 to ~2,800 tokens) pads its whole batch to its length; ``inference.budget_batches`` closes a
batch once padding would exceed a quarter of its tokens. Runs both side by side in one process on one RWKU target
and prints wall times, padded tokens, and the largest difference of the letter logits and MIA NLLs.

    python bench/mcq_batching.py --target 111 --limit 30 [--out docs/results/perf_mcq_batching.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "rwku"


def plain_batches(lengths, batch_size):
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded(batches, lengths) -> int:
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--target", type=int, default=111)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16, help="the evaluation batch (MMLU runs at half of it, as in eval_rwku)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "perf_mcq_batching.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ulmr import inference
    from ulmr.atomic import write_json
    from ulmr.data.rwku import CORE_PARTS, load_rwku
    from ulmr.eval import rwku
    from ulmr.metrics import mcq
    from ulmr.metrics.mia import text_nlls
    from ulmr.models import load

    model, tok = load("smollm2-135m")
    tgt = load_rwku(args.data, args.target, CORE_PARTS + ("mmlu",))
    items = rwku.mcq_items(rwku._stratified(tgt.parts["mmlu"], args.limit), "mmlu")
    cf, user_text, suffix, _ = mcq.mcq_layout(tok, "rwku", 5)
    lengths = [len(cf.prompt_ids(user_text(it), suffix=suffix)) for it in items]
    mia_texts = [r["text"] for r in tgt.parts["forget_mia"][: args.limit] + tgt.parts["retain_mia"][: args.limit]]
    mia_lengths = [len(tok(t)["input_ids"]) for t in mia_texts]
    mcq_batch = max(1, args.batch_size // 2)
    runs = {}
    for label, fn in (("plain", plain_batches), ("budget", inference.budget_batches)):
        mcq.budget_batches = inference.budget_batches = fn  # the callers look the name up at call time
        t0 = time.perf_counter()
        recs = mcq.mcq_predict(model, tok, items, k_shots=5, batch_size=mcq_batch, layout="rwku")
        t1 = time.perf_counter()
        nlls = text_nlls(model, tok, mia_texts, batch_size=mcq_batch)  # eval_rwku scores MIA at half the batch too
        t2 = time.perf_counter()
        runs[label] = {"mmlu_s": t1 - t0, "mia_s": t2 - t1, "accuracy": mcq.accuracy([r["correct"] for r in recs]),
                       "padded_mmlu_tokens": padded(fn(lengths, mcq_batch), lengths),
                       "padded_mia_tokens": padded(fn(mia_lengths, mcq_batch), mia_lengths),
                       "logits": [r["letter_logits"] for r in recs], "nlls": nlls}
    a, b = runs["plain"], runs["budget"]
    logit_diff = max(abs(x - y) for ra, rb in zip(a["logits"], b["logits"]) for x, y in zip(ra, rb))
    nll_diff = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a["nlls"], b["nlls"]))
    print(f"RWKU target {args.target}, --limit {args.limit}, {args.threads} threads, MMLU {len(items)} prompts "
          f"({sum(lengths)} tokens), MIA {len(mia_texts)} texts ({sum(mia_lengths)} tokens):")
    for label, r in runs.items():
        print(f"  {label:7s} MMLU {r['mmlu_s']:6.1f} s ({r['padded_mmlu_tokens']} padded tokens), accuracy {r['accuracy']:.4f}; "
              f"MIA {r['mia_s']:5.1f} s ({r['padded_mia_tokens']} padded tokens)")
    print(f"  largest letter-logit difference {logit_diff:.2e}; largest relative MIA NLL difference {nll_diff:.2e}")
    write_json(Path(args.out), {
        "command": f"python bench/mcq_batching.py --target {args.target} --limit {args.limit} --batch-size {args.batch_size} --threads {args.threads}",
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{platform.machine()}, {args.threads} threads",
        "runs": {k: {m: v for m, v in r.items() if m not in ("logits", "nlls")} for k, r in runs.items()},
        "max_letter_logit_difference": logit_diff, "max_relative_mia_nll_difference": nll_diff,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
