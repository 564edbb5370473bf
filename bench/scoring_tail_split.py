"""Scoring with a batch's answer tails split in two by length vs one padded forward (inference.MIN_PADDING_SAVED).

Scores TOFU mini's 960 answers (gold, paraphrase and perturbations of forget 40, retain 40, real authors 50, world
facts 50; no generation) once per threshold, the thresholds interleaved ``--repeats`` times; 1.1 never splits.
Prints the seconds and the largest relative difference of any per-item value from the never-split run.

    python bench/scoring_tail_split.py [--thresholds 1.1,0.1,0.05] [--repeats 2] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_speed import SHARED, TOFU_LIMITS, max_difference  # noqa: E402

import ulmr.inference as inference  # noqa: E402
from ulmr.data.tofu import load_tofu  # noqa: E402
from ulmr.eval.qa import QAItem, run_items  # noqa: E402
from ulmr.models import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--thresholds", default="1.1,0.1,0.05")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    model, tok = load(args.model)
    sets = load_tofu(SHARED / "tofu", "forget01")
    items = [QAItem(it.question, it.answer, it.paraphrased, it.perturbed) for n, k in TOFU_LIMITS.items() for it in sets[n][:k]]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    first: dict[float, list] = {}
    for rep in range(args.repeats):
        for share in thresholds:
            inference.MIN_PADDING_SAVED = share
            t = time.perf_counter()
            records = run_items(model, tok, items, batch_size=16, generate_answers=False)
            seconds = time.perf_counter() - t
            first.setdefault(share, records)
            diff, where, _ = max_difference({"i": first[thresholds[0]]}, {"i": records}, relative=True)
            print(f"repeat {rep} threshold {share}: {seconds:.1f} s, largest relative per-item difference {diff:.1e} {where}",
                  flush=True)


if __name__ == "__main__":
    main()
