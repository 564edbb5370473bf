"""Compare two bench `results.json` files row by row: the largest |difference| over every metric of each row.

usage: python bench/compare_results.py RUN_A/results.json RUN_B/results.json [--tol 1e-3]
Exits 1 when the rows differ (names or count) or any difference exceeds --tol (metrics are fractions, so
1e-3 is the third decimal of the 0-1 scale; the tables print them x100).
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    rows_a, rows_b = (json.load(open(p, encoding="utf-8"))["rows"] for p in (args.a, args.b))
    names_a, names_b = [r["name"] for r in rows_a], [r["name"] for r in rows_b]
    if names_a != names_b:
        sys.exit(f"rows differ: {names_a} vs {names_b}")
    worst = 0.0
    for ra, rb in zip(rows_a, rows_b):
        keys = sorted(set(ra["metrics"]) | set(rb["metrics"]))
        missing = [k for k in keys if ra["metrics"].get(k) is None or rb["metrics"].get(k) is None]
        if missing:
            sys.exit(f"{ra['name']}: metrics missing in one run: {missing}")
        diffs = {k: abs(ra["metrics"][k] - rb["metrics"][k]) for k in keys}
        top = max(diffs, key=diffs.get)
        worst = max(worst, diffs[top])
        print(f"{ra['name']:24s} {len(keys)} values, max |diff| {diffs[top]:.3g}" + (f" ({top})" if diffs[top] else ""))
    print(f"{len(rows_a)} rows, worst |diff| {worst:.3g} (tolerance {args.tol:g})")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
