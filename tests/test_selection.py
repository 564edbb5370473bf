"""The one selection rule on hand-made curves."""

from __future__ import annotations

import pytest

from ulmr.errors import ConfigError
from ulmr.selection import Floor, Rule, bootstrap_ci, probe_rule, rwku_rule, select, split_items, tofu_rule


def _tofu(forget: float, mu: float) -> dict[str, float]:
    return {"forget_rougeL_recall": forget, "model_utility": mu}


def test_lowest_forget_among_points_whose_utility_holds():
    rule = tofu_rule(target_mu=0.30, retain_mu=0.27)  # floor 0.97 * 0.27 = 0.2619
    curve = [_tofu(0.95, 0.30), _tofu(0.60, 0.27), _tofu(0.40, 0.262), _tofu(0.10, 0.20)]
    chosen = select(curve, rule)
    assert (chosen.index, chosen.holds, chosen.qualifying) == (2, True, [0, 1, 2])


def test_floor_uses_the_lower_of_target_and_retain_mu():
    assert tofu_rule(0.30, 0.27).floors[0].at_least == pytest.approx(0.97 * 0.27)
    assert tofu_rule(0.25, 0.27).floors[0].at_least == pytest.approx(0.97 * 0.25)


def test_no_point_qualifies_takes_highest_utility_and_marks_it():
    rule = tofu_rule(0.30, 0.30)
    curve = [_tofu(0.2, 0.10), _tofu(0.5, 0.25), _tofu(0.1, 0.05)]
    chosen = select(curve, rule)
    assert (chosen.index, chosen.holds, chosen.qualifying) == (1, False, [])
    assert "no point held utility" in chosen.rule


def test_ties_go_to_the_earlier_point():
    rule = Rule("f", "u", (Floor("u", 0.5),))
    assert select([{"f": 0.3, "u": 0.9}, {"f": 0.3, "u": 0.9}], rule).index == 0
    assert select([{"f": 0.9, "u": 0.1}, {"f": 0.8, "u": 0.1}], rule).index == 0  # fallback tie too


def test_rwku_rule_needs_both_neighbour_and_easy():
    rule = rwku_rule(before_neighbour=0.60, before_easy=0.73)
    curve = [
        {"forget_all": 0.10, "neighbor_all": 0.40, "easy": 0.73},  # neighbour below 85% of 0.60 = 0.51
        {"forget_all": 0.12, "neighbor_all": 0.55, "easy": 0.70},  # easy 3 points down
        {"forget_all": 0.20, "neighbor_all": 0.52, "easy": 0.72},
    ]
    assert select(curve, rule).index == 2


def test_probe_rule_is_relative_to_alpha_zero():
    rule = probe_rule({"utility": 0.8, "retain_rouge": 0.6}, share=0.95)
    curve = [{"probe_rouge": 0.7, "utility": 0.8, "retain_rouge": 0.6},
             {"probe_rouge": 0.3, "utility": 0.77, "retain_rouge": 0.58},
             {"probe_rouge": 0.1, "utility": 0.70, "retain_rouge": 0.6}]
    assert select(curve, rule).index == 1


def test_empty_curve_is_an_error():
    with pytest.raises(ConfigError, match="empty curve"):
        select([], tofu_rule(0.3, 0.3))


def test_split_is_seeded_disjoint_and_complete():
    sel, rep = split_items(41, seed=0)
    assert sorted(sel + rep) == list(range(41)) and len(sel) == 20 and len(rep) == 21
    assert split_items(41, seed=0) == (sel, rep)
    assert split_items(41, seed=1) != (sel, rep)


def test_bootstrap_interval_brackets_the_mean():
    values = [0.0, 1.0, 0.5, 0.25, 0.75, 1.0, 0.0, 0.5]
    low, high = bootstrap_ci(values)
    assert low < sum(values) / len(values) < high
    assert 0.0 <= low and high <= 1.0
    assert bootstrap_ci([0.4, 0.4, 0.4]) == pytest.approx((0.4, 0.4))
