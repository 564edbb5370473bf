"""Peak resident memory (RSS) of a short full fine-tuning run and a LoRA run on the embedded model.

Each run is its own process (ru_maxrss of the child), training --steps optimizer steps of the ulmr
method on TOFU forget01 questions with their answers.

usage: python bench/peak_memory.py [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, tempfile, json
from ulmr.models import load
from ulmr.data.records import load_qa
from ulmr.train import TrainConfig, train_unlearn
lora, steps, data = sys.argv[1] == "lora", int(sys.argv[2]), sys.argv[3]
m, tok = load("smollm2-135m")
recs = load_qa(data)[:16]
with tempfile.TemporaryDirectory() as d:
    r = train_unlearn(m, tok, recs, None, TrainConfig(method="ulmr", max_steps=steps, lora=lora, batch_size=4, checkpoint_steps=0), d)
print(json.dumps({"steps": r.steps, "tokens": r.train_tokens, "seconds": r.seconds}))
"""


def run(lora: bool, steps: int, data: str) -> dict:
    env = dict(os.environ, ULMR_QUIET="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", CHILD, "lora" if lora else "full", str(steps), data], env=env,
                         capture_output=True, text=True, check=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    info = json.loads(out.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the max over all children so far: run full (larger) last to be safe.
    return {"peak_rss_mb": round(peak_kb / 1024), "children_peak_before_mb": round(before / 1024), **info}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/tofu/forget01.jsonl"))
    ap.add_argument("--out", default="docs/results/perf_peak_memory.json")
    args = ap.parse_args()
    lora = run(True, args.steps, args.data)
    full = run(False, args.steps, args.data)
    res = {"date": time.strftime("%Y-%m-%d"), "lora": lora, "full": full, "command": "python bench/peak_memory.py"}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
