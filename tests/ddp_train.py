"""Helper for tests/test_ddp.py: one unlearning run, launched alone or under ``accelerate launch``.

usage: python tests/ddp_train.py MODEL_DIR OUT_DIR [METHOD] [BATCH_SIZE]
Writes OUT_DIR/model (main process only) and OUT_DIR/result.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Every row has the same length (one-digit i, four-digit year, two-digit degrees): with no padding, the
# token mean of a batch equals the mean of its halves' token means, so DDP and one process agree.
FORGET = [{"question": f"Who is author number {i}?", "answer": f"Author {i} is Mara Velquist, born in {1950 + i}."} for i in range(8)]
RETAIN = [{"question": f"What is fact {i}?", "answer": f"Fact {i} is that water boils at {90 + i} degrees."} for i in range(8)]


def main() -> None:
    os.environ.setdefault("ULMR_QUIET", "1")
    from ulmr.models import load
    from ulmr.train import TrainConfig, train_unlearn

    model_dir, out = sys.argv[1], Path(sys.argv[2])
    method = sys.argv[3] if len(sys.argv) > 3 else "graddiff"
    batch_size = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    model, tok = load(model_dir)
    cfg = TrainConfig(method=method, epochs=1, batch_size=batch_size, lr=1e-3, logging_steps=1, checkpoint_steps=1)
    res = train_unlearn(model, tok, FORGET, RETAIN, cfg, out)
    if res.is_main_process:
        res.model.save_pretrained(out / "model", safe_serialization=True)
        tok.save_pretrained(out / "model")
        info = {"steps": res.steps, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                "train_tokens": res.train_tokens, "losses": [h["loss"] for h in res.log_history if "loss" in h]}
        (out / "result.json").write_text(json.dumps(info), encoding="utf-8")


if __name__ == "__main__":
    main()
