"""Adding a method is one class and one registry line: a method defined here, registered by setting its line in
``registry.METHODS``, runs through ``ulmr unlearn``, ``ulmr compare`` and both benchmarks' method lists and tables."""

from __future__ import annotations

import json

import pytest

from ulmr.methods import registry
from ulmr.methods.ga import GradientAscent


class HalfGA(GradientAscent):
    """Gradient ascent at half the step: loss = −0.5·NLL_f."""

    name = "half_ga"
    display_name = "Half Gradient Ascent"

    def loss(self, model, batch, ref=None):
        return 0.5 * super().loss(model, batch, ref)


@pytest.fixture
def half_ga(monkeypatch):
    monkeypatch.setitem(registry.METHODS, HalfGA.name, HalfGA)  # the one registry line
    return HalfGA.name


def test_new_method_runs_through_unlearn_and_compare(half_ga, cli, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "u"
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(out),
                    "--method", half_ga, "--max-steps", "1", "--batch-size", "2", "--max-length", "64")
    assert code == 0, err
    record = json.loads((out / "ulmr_run.json").read_text(encoding="utf-8"))
    assert record["settings"]["method"] == half_ga and record["training"]["steps"] == 1
    assert record["alpha"] is None and record["counts"]["d_fr_rows"] == 0  # GA's declarations: no averaging, no D_fr

    cmp_out = tmp_path / "cmp"
    code, err = cli("compare", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--methods", half_ga,
                    "--steps", "1", "--max-new-tokens", "4", "--out", str(cmp_out))
    assert code == 0, err
    summary = json.loads((cmp_out / "compare.json").read_text(encoding="utf-8"))
    assert list(summary["results"]) == ["base", half_ga] and summary["results"][half_ga]["steps"] == 1
    assert f"| {half_ga} |" in (cmp_out / "compare.md").read_text(encoding="utf-8")


def test_new_method_is_in_both_benchmarks_and_their_tables(half_ga, tmp_path):
    from ulmr.benchmarks import common
    from ulmr.benchmarks.rwku_bench import RwkuBenchConfig
    from ulmr.benchmarks.tofu_bench import TofuBenchConfig
    from ulmr.eval.report import markdown

    for cls in (TofuBenchConfig, RwkuBenchConfig):
        assert half_ga in cls(data=str(tmp_path)).methods  # listed by default
        assert cls(data=str(tmp_path), methods=[half_ga]).methods == [half_ga]  # and accepted when asked for
    rows = common.method_rows([half_ga], lambda m: [{"metrics": {"forget.R": 0.25}}])
    table = markdown(common.bench_table("t", rows, [common.Column("Forget R", ("forget.R",), 100)], []))
    assert "| Half Gradient Ascent | 25.00 |" in table


def test_unregistered_method_is_refused_by_every_entry_point(tmp_path):
    from pydantic import ValidationError

    from ulmr.benchmarks.tofu_bench import TofuBenchConfig
    from ulmr.config import UnlearnConfig

    with pytest.raises(ValidationError, match="unknown method 'half_ga'"):
        UnlearnConfig(forget="f.jsonl", out=tmp_path, method="half_ga")
    with pytest.raises(ValidationError, match="unknown method 'half_ga'"):
        TofuBenchConfig(data=str(tmp_path), methods=["half_ga"])
