"""The one selection rule on hand-made curves."""

from __future__ import annotations

import pytest

from ulmr.errors import ConfigError
from ulmr.selection import Floor, Rule, bootstrap_intervals, halves, probe_rule, rwku_rule, select, split_items, tofu_rule


def _tofu(forget: float, mu: float) -> dict[str, float]:
    return {"forget.R": forget, "MU": mu}


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
    rule = rwku_rule(before_neighbour=60.0, before_easy=73.0)  # both in points, as the bench reports them
    curve = [
        {"forget.All": 10.0, "neighbor.All": 40.0, "Easy": 73.0},  # neighbour below 85% of 60 = 51
        {"forget.All": 12.0, "neighbor.All": 55.0, "Easy": 70.0},  # easy 3 points down
        {"forget.All": 20.0, "neighbor.All": 52.0, "Easy": 72.0},
    ]
    assert select(curve, rule).index == 2


def test_probe_rule_is_relative_to_alpha_zero():
    rule = probe_rule({"utility": 0.8, "retain_rouge": 0.6})  # floors: utility 0.78, retain ROUGE-L 0.51
    curve = [{"probe_rouge": 0.7, "utility": 0.8, "retain_rouge": 0.6},
             {"probe_rouge": 0.3, "utility": 0.785, "retain_rouge": 0.52},
             {"probe_rouge": 0.2, "utility": 0.79, "retain_rouge": 0.50},  # retain below 85%
             {"probe_rouge": 0.1, "utility": 0.77, "retain_rouge": 0.6}]  # utility 3 points down
    assert select(curve, rule).index == 1
    assert select(curve, probe_rule({"utility": 0.8, "retain_rouge": 0.6}, retain_share=0.8, utility_drop=0.05)).index == 3


def test_empty_curve_is_an_error():
    with pytest.raises(ConfigError, match="empty curve"):
        select([], tofu_rule(0.3, 0.3))


def test_split_is_seeded_disjoint_and_complete():
    sel, rep = split_items(41, seed=0)
    assert sorted(sel + rep) == list(range(41)) and len(sel) == 20 and len(rep) == 21
    assert split_items(41, seed=0) == (sel, rep)
    assert split_items(41, seed=1) != (sel, rep)


def _mean(xs):
    return sum(xs) / len(xs)


def test_bootstrap_intervals_bracket_each_metric_and_resample_a_group_together():
    per_item = {"forget:R": [0.0, 1.0, 0.5, 0.25, 0.75, 1.0, 0.0, 0.5], "forget:S": [0.0, 1.0, 0.5, 0.25, 0.75, 1.0, 0.0, 0.5],
                "retain:R": [0.4, 0.4, 0.4]}
    metrics = lambda v: {"f": _mean(v["forget:R"]), "diff": _mean(v["forget:R"]) - _mean(v["forget:S"]),  # noqa: E731
                         "r": _mean(v["retain:R"])}
    ci = bootstrap_intervals(per_item, metrics, n_resamples=500)
    low, high = ci["f"]
    assert low < _mean(per_item["forget:R"]) < high and 0.0 <= low and high <= 1.0
    assert ci["diff"] == pytest.approx((0.0, 0.0))  # fields of one group are resampled with the same items
    assert ci["r"] == pytest.approx((0.4, 0.4))
    with pytest.raises(ValueError, match="forget:S: 2 values, its group has 8"):
        bootstrap_intervals({**per_item, "forget:S": [1.0, 2.0]}, metrics)


def test_halves_split_forget_groups_only_and_consistently():
    per_item = {"forget:R": list(range(10)), "forget:P": [10 + i for i in range(10)], "retain:R": [1, 2, 3]}
    sel, rep = halves(per_item, lambda g: g == "forget")
    assert sorted(sel["forget:R"] + rep["forget:R"]) == list(range(10)) and len(sel["forget:R"]) == 5
    assert [p - 10 for p in sel["forget:P"]] == sel["forget:R"]  # one item split for every field of the group
    assert sel["retain:R"] == rep["retain:R"] == [1, 2, 3]


def test_sweep_and_alpha_auto_choose_through_select(monkeypatch):
    """``ulmr sweep`` (select_alpha) and ``--alpha auto`` (pipeline.choose_alpha) both pick with selection.select."""
    import ulmr.pipeline
    import ulmr.sweep
    from ulmr.config import UnlearnConfig
    from ulmr.sweep import SweepPoint

    seen = []
    real = ulmr.sweep.select
    monkeypatch.setattr(ulmr.sweep, "select", lambda points, rule: (seen.append(len(points)), real(points, rule))[1])
    curve = [SweepPoint(a, 0.9 - a / 2, 0.5, 0.8, 0.0, 0.7 - (0.2 if a > 0.5 else 0.0)) for a in (0.0, 0.2, 0.4, 0.6, 1.0)]
    assert ulmr.sweep.select_alpha(curve)[0] == 0.4 and seen == [4]
    monkeypatch.setattr(ulmr.pipeline, "sweep", lambda *a, **k: curve)
    cfg = UnlearnConfig(forget="f.jsonl", out="o", alpha="auto")
    chosen, record = ulmr.pipeline.choose_alpha(cfg, None, None, "base", [{"question": "q", "answer": "a"}], [])
    assert chosen == 0.4 and seen == [4, 4] and record["rule"].startswith("lowest probe_rouge")
