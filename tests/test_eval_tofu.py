"""TOFU evaluator end-to-end on the tiny random model with 2-3 real items per set."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import hmean

from ulmr.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tofu_result(tiny, tofu_dir):
    from ulmr.eval.tofu import evaluate_tofu

    model, tok = tiny
    limits = {"forget": 2, "retain": 1, "real_authors": 1, "world_facts": 2}
    return evaluate_tofu(model, tok, tofu_dir, "forget01", limits, max_new_tokens=4, batch_size=4)


def test_shape_and_ranges(tofu_result):
    r = tofu_result
    assert [r["sets"][n]["n"] for n in ("forget", "retain", "real_authors", "world_facts")] == [2, 1, 1, 2]
    for s in r["sets"].values():
        for k in ("R", "P", "TR"):
            assert 0.0 <= s[k] <= 1.0
    assert r["forget_quality"] is None


def test_per_item_records_are_transparent(tofu_result):
    f = tofu_result["items"]["forget"][0]
    assert f["prompt"].startswith("<|im_start|>system") and f["question"] in f["prompt"]
    assert f["prompt"].endswith("<|im_start|>assistant\n")
    for k in ("answer", "generated", "answer_nll", "paraphrased_answer", "paraphrased_nll", "perturbed_answers", "perturbed_nlls", "truth_ratio_raw"):
        assert k in f, k
    assert len(f["perturbed_nlls"]) == 5
    ra = tofu_result["items"]["real_authors"][0]
    assert "paraphrased_nll" not in ra and len(ra["perturbed_nlls"]) == 3


def test_formulas_from_per_item_nlls(tofu_result):
    items, sets = tofu_result["items"], tofu_result["sets"]
    # Forget: TR = mean(min(R, 1/R)), R = exp(nll_para - mean(nll_pert)); P = mean exp(-nll)
    rs = [math.exp(x["paraphrased_nll"] - sum(x["perturbed_nlls"]) / len(x["perturbed_nlls"])) for x in items["forget"]]
    assert sets["forget"]["TR"] == pytest.approx(sum(min(r, 1 / r) for r in rs) / len(rs))
    assert sets["forget"]["P"] == pytest.approx(sum(math.exp(-x["answer_nll"]) for x in items["forget"]) / 2)
    # Real Authors: P normalised over options, TR with the correct answer as "paraphrase"
    ps, trs = [], []
    for x in items["real_authors"]:
        pc, pw = math.exp(-x["answer_nll"]), [math.exp(-n) for n in x["perturbed_nlls"]]
        ps.append(pc / (pc + sum(pw)))
        r = math.exp(x["answer_nll"] - sum(x["perturbed_nlls"]) / 3)
        trs.append(max(0.0, 1 - r))
    assert sets["real_authors"]["P"] == pytest.approx(sum(ps) / len(ps))
    assert sets["real_authors"]["TR"] == pytest.approx(sum(trs) / len(trs))
    nine = [sets[n][k] for n in ("retain", "real_authors", "world_facts") for k in ("P", "R", "TR")]
    expected = 0.0 if min(nine) == 0 else hmean(nine)
    assert tofu_result["model_utility"] == pytest.approx(expected)


def test_forget_quality_against_itself_is_one(tiny, tofu_dir, tofu_result, tmp_path):
    from ulmr.atomic import write_json
    from ulmr.eval.tofu import evaluate_tofu, reference_ratios

    ref = tmp_path / "per_item.json"
    write_json(ref, tofu_result)
    assert reference_ratios(ref, "forget01") == [x["truth_ratio_raw"] for x in tofu_result["items"]["forget"]]
    with pytest.raises(DataError):
        reference_ratios(ref, "forget05")
    res = evaluate_tofu(*tiny, tofu_dir, "forget01", {"forget": 2, "retain": 1, "real_authors": 1, "world_facts": 1},
                        max_new_tokens=1, batch_size=4, reference=ref)
    assert res["forget_quality"] == pytest.approx(1.0)


def test_bad_inputs(tofu_dir, tmp_path):
    from ulmr.data.tofu import load_tofu

    with pytest.raises(ConfigError):
        load_tofu(tofu_dir, "forget02")
    with pytest.raises(DataError, match="forget01_perturbed.jsonl"):
        load_tofu(tmp_path, "forget01")
    (tmp_path / "forget01_perturbed.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r":1: missing field 'perturbed_answer'"):
        load_tofu(tmp_path, "forget01")


def test_cli_writes_reports(tiny_model_dir, tofu_dir, tmp_path):
    from typer.testing import CliRunner

    from ulmr.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", "tofu", "--model", str(tiny_model_dir), "--data", str(tofu_dir),
                                   "--limit-forget", "2", "--limit-retain", "1", "--limit-ra", "1", "--limit-wf", "1",
                                   "--max-new-tokens", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert "items" not in summary and summary["sets"]["forget"]["n"] == 2
    assert "items" in json.loads((out / "per_item.json").read_text())
    table = (out / "table.md").read_text()
    assert "| Model | Forget R / P / TR (%) | Retain R / P / TR (%) | Real Authors R / P / TR (%) | World Facts R / P / TR (%) | FQ | MU (%) |" in table
