"""Recovery of several `ulmr verify` runs (seeds) side by side, and their mean: the aggregation issue 26 sets
for its goals (docs/results/verify.md, docs/results/ulmr_ablation.md).

usage: python bench/verify_means.py VERIFY_DIR_OR_JSON [VERIFY_DIR_OR_JSON ...]
Prints one line per check and condition: each run's recovery by ROUGE-L / by answer probability, then the mean,
and counts the attack types whose mean is <= the runs' threshold by both measures.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ulmr.verify.scoring import both_pass


def _load(arg: str) -> dict:
    path = Path(arg)
    return json.loads((path / "verify.json" if path.is_dir() else path).read_text())


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _mean(xs: list[float | None]) -> float | None:
    return None if any(x is None for x in xs) else statistics.mean(xs)


def main(args: list[str]) -> None:
    runs = [_load(a) for a in args]
    threshold = runs[0]["settings"]["threshold"]
    passing = 0
    for row in runs[0]["rows"]:
        key = (row["check"], row["condition"])
        rows = [next(r for r in run["rows"] if (r["check"], r["condition"]) == key) for run in runs]
        rouge, prob = _mean([r.get("recovery") for r in rows]), _mean([r.get("prob_recovery") for r in rows])
        cells = " ".join(f"{_fmt(r.get('recovery'))}/{_fmt(r.get('prob_recovery'))}" for r in rows)
        print(f"{key[0]:12s} {key[1][:34]:34s} {cells}   mean {_fmt(rouge)}/{_fmt(prob)}")
        if key[0] == "adversarial" and both_pass((rouge, prob), threshold):  # the pass rule `ulmr verify` applies per run
            passing += 1
    print(f"attack types whose mean recovery is <= {threshold:g} by both measures: {passing}")


if __name__ == "__main__":
    main(sys.argv[1:])
