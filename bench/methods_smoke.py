"""Acceptance smoke run: every registered method, one epoch on 5 TOFU forget01 items (+5 retain90 items)
with the embedded model, one after another; each result is saved, reloaded and checked, and the wall
times go to docs/results/methods_smoke.md.

usage: python bench/methods_smoke.py [--model smollm2-135m] [--out /tmp/ulmr_smoke] [--methods ulmr,ga,...]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from ulmr.atomic import write_text  # noqa: E402
from ulmr.data.records import QARecord, load_qa  # noqa: E402
from ulmr.methods import METHODS  # noqa: E402
from ulmr.methods.refusals import load_refusals  # noqa: E402
from ulmr.models import load  # noqa: E402
from ulmr.train import TrainConfig, train_unlearn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOFU = ROOT.parent / "shared" / "data" / "tofu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="/tmp/ulmr_smoke")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--doc", default=str(ROOT / "docs" / "results" / "methods_smoke.md"))
    args = ap.parse_args()

    base, tok = load(args.model)
    forget = load_qa(TOFU / "forget01.jsonl", limit=args.n)
    retain = load_qa(TOFU / "retain90.jsonl", limit=args.n)
    # ULMR's SFT stage trains on D_fr, whose answers are already negative responses: refusals here.
    rng = random.Random(0)
    d_fr = [QARecord(r.question, rng.choice(load_refusals())) for r in forget]
    probe = tok("Who is Basil Mahfouz Al-Kuwaiti?", return_tensors="pt")

    lines = []
    for name in args.methods.split(","):
        out = Path(args.out) / name
        cfg = TrainConfig(method=name, epochs=1, checkpoint_steps=0, logging_steps=1)
        start = time.perf_counter()
        res = train_unlearn(copy.deepcopy(base), tok, d_fr if name == "ulmr" else forget, retain, cfg, out)
        train_s = time.perf_counter() - start
        res.model.save_pretrained(out / "model", safe_serialization=True)
        tok.save_pretrained(out / "model")
        reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
        with torch.no_grad():
            ok = torch.isfinite(reloaded(**probe).logits).all().item()
        total_s = time.perf_counter() - start
        losses = [round(h["loss"], 3) for h in res.log_history if "loss" in h]
        row = f"| {name} | {res.steps} | {res.train_tokens} | {train_s:.1f} | {total_s:.1f} | {losses} | {'yes' if ok else 'NO'} |"
        print(row, file=sys.stderr)
        lines.append(row)

    doc = f"""# Methods smoke run (acceptance)

- Command: `{' '.join(['python', 'bench/methods_smoke.py', *sys.argv[1:]])}`
- Date: {dt.datetime.now().isoformat(timespec="minutes")}; {os.cpu_count()} CPU cores shared with other jobs, torch {torch.__version__}
- Model: {args.model} (full fine-tuning, float32); data: first {args.n} items of TOFU forget01 (ULMR: the same
  questions with built-in refusals as answers, i.e. a D_fr) and first {args.n} of retain90 (methods that use a
  retain set pair one retain row per forget row; `retrain` trains on the retain rows only).
- Each method: 1 epoch, batch 4, its default lr/beta/weights, no checkpoints; then `save_pretrained`
  (safetensors) + tokenizer, reload with `AutoModelForCausalLM.from_pretrained`, one finite forward.
- Methods ran one after another in one process. "train s" is `train_unlearn` (including encoding and, for DPO/NPO,
  the one-time reference log-prob pass); "total s" adds save and reload.

| method | steps | tokens | train s | total s | loss per step | reload OK |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}
"""
    write_text(args.doc, doc)


if __name__ == "__main__":
    main()
