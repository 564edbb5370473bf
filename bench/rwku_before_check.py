"""Check that ``ulmr bench rwku``'s Before row is the mean of ``ulmr eval rwku --target T`` over its targets.

Usage (after the bench, with one ``ulmr eval rwku ... --out DIR`` per target, same --limit / --utility):

    python bench/rwku_before_check.py runs/bench/rwku runs/eval/rwku-before-t111 runs/eval/rwku-before-t106 ...

Prints one line per metric (bench Before, mean of the evaluations, difference) and exits 1 when any differs
by more than 1e-6 or when the evaluations' targets and caps are not the bench's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import mean

KEYS = [("forget", k) for k in ("FB", "QA", "AA", "All")] + [("neighbor", k) for k in ("FB", "QA", "All")]
KEYS += [("mia", "FM"), ("mia", "RM"), ("utility", "Gen"), ("utility", "Easy")]


def main(bench_dir: str, *eval_dirs: str) -> int:
    results = json.loads((Path(bench_dir) / "results.json").read_text(encoding="utf-8"))
    before = next(r["metrics"] for r in results["rows"] if r["name"] == "Before")
    settings = results["settings"]
    evals = [json.loads((Path(d) / "summary.json").read_text(encoding="utf-8")) for d in eval_dirs]
    targets = sorted(int(e["target"].split("_")[0]) for e in evals)
    ok = targets == sorted(settings["targets"]) and all(e["limit"] == (settings["limit"] or None) for e in evals)
    if not ok:
        print(f"evaluations cover targets {targets} with limits {[e['limit'] for e in evals]}; "
              f"the bench has {settings['targets']} with --limit {settings['limit']}")
    print(f"{'metric':<14}{'bench Before':>14}{'mean of evals':>15}{'difference':>12}")
    for group, key in KEYS:
        name = f"{group}.{key}" if group != "utility" else key
        b, e = before[name], mean(ev[group][key] for ev in evals)
        ok &= abs(b - e) <= 1e-6
        print(f"{name:<14}{b:>14.4f}{e:>15.4f}{b - e:>12.2e}")
    print("PASS: the Before row equals the mean of the evaluations" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
