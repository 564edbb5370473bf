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

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

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
    """TOFU (the bench's flat keys, fractions): lowest ``forget.R`` (forget ROUGE-L recall) with ``MU`` >=
    ``share`` x the lower of the target's and the retain model's MU (the retain model, the ideal outcome,
    sits below the target's MU)."""
    floor = share * min(target_mu, retain_mu)
    why = f"MU >= {share:.0%} of min(target {target_mu * 100:.2f}, retain {retain_mu * 100:.2f}) = {floor * 100:.2f}"
    return Rule("forget.R", "MU", (Floor("MU", floor, why),))


def rwku_rule(before_neighbour: float, before_easy: float | None, neighbour_share: float = 0.85, easy_drop: float = 2.0) -> Rule:
    """RWKU (the bench's flat keys, both in points of 100): lowest ``forget.All`` with ``neighbor.All`` >= 85%
    of Before and ``Easy`` within ``easy_drop`` points of Before (means over targets; no Easy floor when the
    easy set was not evaluated)."""
    n_floor = neighbour_share * before_neighbour
    floors = [Floor("neighbor.All", n_floor, f"Neighbour All >= {neighbour_share:.0%} of Before {before_neighbour:.2f} = {n_floor:.2f}")]
    if before_easy is not None:
        e_floor = before_easy - easy_drop
        floors.append(Floor("Easy", e_floor, f"Easy >= Before {before_easy:.2f} - {easy_drop:g} points = {e_floor:.2f}"))
    return Rule("forget.All", "neighbor.All", tuple(floors))


# ``--alpha auto``'s floors: what "utility holds" means for RWKU's neighbours and easy set and for the demo's
# checks. With 95% of α = 0 on both (before 2026-12-07) no α held on the demo set at any of three seeds: the
# retain ROUGE-L of long greedy answers falls ~10% at α 0.2 already, so the rule fell back to the most useful α
# and at seed 1 chose one whose neighbour check failed (docs/results/ulmr_ablation.md).
RETAIN_SHARE = 0.85
UTILITY_DROP = 0.02


def probe_rule(reference: Mapping[str, float], retain_share: float = RETAIN_SHARE, utility_drop: float = UTILITY_DROP) -> Rule:
    """``ulmr sweep`` / ``--alpha auto``: lowest held-out probe ROUGE-L with retain ROUGE-L >= ``retain_share``
    x its value at α = 0 (the model before unlearning) and utility (a fraction) at most ``utility_drop`` below
    its α = 0 value."""
    u_floor, r_floor = reference["utility"] - utility_drop, retain_share * reference["retain_rouge"]
    return Rule("probe_rouge", "utility", (
        Floor("utility", u_floor, f"utility >= alpha=0 ({reference['utility'] * 100:.2f}) - {utility_drop * 100:g} points"),
        Floor("retain_rouge", r_floor, f"retain ROUGE-L >= {retain_share:.0%} of alpha=0 ({reference['retain_rouge'] * 100:.2f})")))


# --------------------------------------------------------------------------- items
def split_items(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of a seeded split of ``n`` forget items into (selection half, report half), each sorted.
    The selection half gets the smaller half when ``n`` is odd."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    half = n // 2
    return sorted(order[:half]), sorted(order[half:])


PerItem = Mapping[str, Sequence[float]]  # "<group>:<field>" -> one value per item; a group's fields share its items


def item_groups(per_item: PerItem) -> dict[str, int]:
    """Group name -> item count (every field of a group must have the same length)."""
    sizes: dict[str, int] = {}
    for key, values in per_item.items():
        group = key.split(":", 1)[0]
        if sizes.setdefault(group, len(values)) != len(values):
            raise ValueError(f"per-item field {key}: {len(values)} values, its group has {sizes[group]}")
    return sizes


def take(per_item: PerItem, picks: Mapping[str, Sequence[int]]) -> dict[str, list[float]]:
    """The items ``picks[group]`` of each group named in ``picks`` (other groups whole)."""
    return {k: ([v[i] for i in picks[k.split(":", 1)[0]]] if k.split(":", 1)[0] in picks else list(v))
            for k, v in per_item.items()}


def halves(per_item: PerItem, is_forget: Callable[[str], bool], seed: int = 0) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(selection half, report half) of ``per_item``: every forget group split by :func:`split_items`, the
    other groups (utility) whole in both."""
    split = {g: split_items(n, seed) for g, n in item_groups(per_item).items() if is_forget(g)}
    return take(per_item, {g: s[0] for g, s in split.items()}), take(per_item, {g: s[1] for g, s in split.items()})


def bootstrap_intervals(per_item: PerItem, metrics_of: Callable[[PerItem], Mapping[str, float | None]],
                        n_resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """95% percentile bootstrap interval of every metric ``metrics_of`` computes, resampling the items of each
    group with replacement (a group's fields together; groups independently). None where a metric is undefined."""
    rng = np.random.default_rng(seed)
    sizes = item_groups(per_item)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        picks = {g: rng.integers(0, n, n) for g, n in sizes.items() if n}
        for k, v in metrics_of(take(per_item, picks)).items():
            if v is not None and math.isfinite(v):
                draws.setdefault(k, []).append(float(v))
    out: dict[str, tuple[float, float] | None] = {}
    for k in metrics_of(per_item):
        vals = draws.get(k)
        out[k] = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else None
    return out
