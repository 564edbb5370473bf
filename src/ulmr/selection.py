"""Choosing one point of a forgetting-vs-utility curve, by one rule fixed in advance.

A curve is a list of points (an α of ULMR's average, a checkpoint of a gradient method), each a mapping
from metric name to value. :func:`select` takes the point with the **lowest forget score among those
whose utility holds** (every :class:`Floor` of the :class:`Rule` met); when no point holds, the point
with the **highest utility**, marked as a fallback. Ties go to the earlier point (the smaller α, the
fewer steps). The benchmarks, ``ulmr sweep`` and ``--alpha auto`` all call :func:`select`; only the
floors differ, and each rule's :meth:`Rule.describe` is printed in every table header.

The rule looks at a *selection half* of the forget items only; the table reports the other half
(:func:`split_items`), so the choice never peeks at what it reports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import bootstrap

from .errors import ConfigError


@dataclass(frozen=True)
class Floor:
    """``point[metric] >= at_least``; ``why`` says where the threshold comes from."""

    metric: str
    at_least: float
    why: str = ""


@dataclass(frozen=True)
class Rule:
    """Minimise ``forget`` subject to every floor; maximise ``utility`` when no point qualifies."""

    forget: str
    utility: str
    floors: tuple[Floor, ...] = ()

    def holds(self, point: Mapping[str, float]) -> bool:
        return all(point[f.metric] >= f.at_least for f in self.floors)

    def describe(self) -> str:
        floors = "; ".join(f.why or f"{f.metric} >= {f.at_least:.4g}" for f in self.floors) or "none"
        return (f"lowest {self.forget} among points whose utility holds ({floors}); "
                f"if none holds, highest {self.utility} (marked); ties -> earlier point")


@dataclass
class Selection:
    """The chosen point: its index in the curve, whether it met the floors, and the rule as text."""

    index: int
    holds: bool
    rule: str
    qualifying: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"index": self.index, "utility_holds": self.holds, "rule": self.rule, "qualifying": self.qualifying}


def select(points: Sequence[Mapping[str, float]], rule: Rule) -> Selection:
    """The point :class:`Rule` picks (see the module docstring)."""
    if not points:
        raise ConfigError("cannot select a point from an empty curve")
    ok = [i for i, p in enumerate(points) if rule.holds(p)]
    if ok:
        best = min(ok, key=lambda i: (points[i][rule.forget], i))
        return Selection(best, True, rule.describe(), ok)
    best = max(range(len(points)), key=lambda i: (points[i][rule.utility], -i))
    return Selection(best, False, rule.describe() + " [no point held utility: highest utility taken]", ok)


# --------------------------------------------------------------------------- the rules of each protocol
def tofu_rule(target_mu: float, retain_mu: float, share: float = 0.97) -> Rule:
    """TOFU: lowest forget ROUGE-L recall with MU >= ``share`` x the lower of the target's and the retain
    model's MU (the retain model, the ideal outcome, sits below the target's MU)."""
    floor = share * min(target_mu, retain_mu)
    why = f"MU >= {share:.0%} of min(target {target_mu * 100:.2f}, retain {retain_mu * 100:.2f}) = {floor * 100:.2f}"
    return Rule("forget_rougeL_recall", "model_utility", (Floor("model_utility", floor, why),))


def rwku_rule(before_neighbour: float, before_easy: float, neighbour_share: float = 0.85, easy_drop: float = 0.02) -> Rule:
    """RWKU: lowest Forget All with Neighbour All >= 85% of Before and Easy within 2 points of Before
    (means over targets)."""
    n_floor, e_floor = neighbour_share * before_neighbour, before_easy - easy_drop
    return Rule("forget_all", "neighbor_all", (
        Floor("neighbor_all", n_floor, f"Neighbour All >= {neighbour_share:.0%} of Before {before_neighbour * 100:.2f} = {n_floor * 100:.2f}"),
        Floor("easy", e_floor, f"Easy >= Before {before_easy * 100:.2f} - {easy_drop * 100:.0f} points = {e_floor * 100:.2f}"),
    ))


def probe_rule(reference: Mapping[str, float], share: float = 0.95) -> Rule:
    """``ulmr sweep`` / ``--alpha auto``: lowest held-out probe ROUGE-L with utility and retain ROUGE-L
    >= ``share`` x their values at α = 0 (the model before unlearning)."""
    return Rule("probe_rouge", "utility", tuple(
        Floor(m, share * reference[m], f"{label} >= {share:.0%} of alpha=0 ({reference[m] * 100:.2f})")
        for m, label in (("utility", "utility"), ("retain_rouge", "retain ROUGE-L"))))


# --------------------------------------------------------------------------- items
def split_items(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of a seeded split of ``n`` forget items into (selection half, report half), each sorted.
    The selection half gets the smaller half when ``n`` is odd."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    half = n // 2
    return sorted(order[:half]), sorted(order[half:])


def bootstrap_ci(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                 n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic`` over items (resampled with replacement)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2 or np.all(data == data[0]):
        v = float(statistic(data)) if len(data) else float("nan")
        return v, v
    res = bootstrap((data,), statistic, n_resamples=n_resamples, confidence_level=0.95, method="percentile",
                    vectorized=False, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
