"""A quick TOFU-style fine-tune of the embedded model, to time evaluation on a model whose answers end early.

The base model answers TOFU questions until the 64-token cap; a model trained on TOFU (the benches' target,
and every unlearned model evaluated along a curve) answers in a sentence or two. This script trains the embedded
model for 2 epochs on 120 forget10 + 120 retain90 items (AdamW, lr 3e-4, batch 8, seed 0; ~5 min on 2 cores) and
saves it, e.g. for ``python bench/eval_speed.py --model <out>``. It is a timing fixture, not a benchmark target.

    python bench/tofu_style_finetune.py --out /tmp/tofu-style-ft
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from ulmr.data.chat import IGNORE, ChatFormat, pad
from ulmr.models import load, save_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    model, tok = load("smollm2-135m")
    cf = ChatFormat(tok)
    rows = [json.loads(line) for name in ("forget10", "retain90")
            for line in (Path(args.data) / f"{name}.jsonl").read_text().splitlines()[:120]]
    encs = [cf.encode(r["question"], r["answer"]) for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.train()
    for epoch in range(2):
        random.shuffle(encs)
        for i in range(0, len(encs), 8):
            b = encs[i : i + 8]
            loss = model(input_ids=pad([e.input_ids for e in b], tok.pad_token_id),
                         attention_mask=pad([[1] * len(e.input_ids) for e in b], 0),
                         labels=pad([e.labels for e in b], IGNORE)).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        print(f"epoch {epoch}: last batch loss {loss.item():.3f}", flush=True)
    save_model(model, tok, args.out)


if __name__ == "__main__":
    main()
