"""Model load times: first load of the embedded GGUF (dequantisation + caching as safetensors) into an
empty cache, then cached loads (median of --runs). Goal: cached < 5 s.

usage: python bench/model_load.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import time, torch
t = time.perf_counter()
from ulmr.models import load
m, tok = load("smollm2-135m")
print(time.perf_counter() - t)
"""


def timed_load(cache: str) -> float:
    env = dict(os.environ, ULMR_CACHE=cache, ULMR_QUIET="1")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="docs/results/perf_model_load.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        first = timed_load(cache)
        cached = [timed_load(cache) for _ in range(args.runs)]
    res = {"date": time.strftime("%Y-%m-%d"), "first_load_s": round(first, 2), "cached_load_s_median": round(statistics.median(cached), 2),
           "cached_load_s_all": [round(c, 2) for c in cached], "command": "python bench/model_load.py"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
