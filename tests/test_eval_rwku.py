"""RWKU evaluator: prompt mapping of adversarial types, levels/All, MIA, utility, end-to-end on the tiny model."""

from __future__ import annotations

import json

import pytest

from ulmr.errors import ConfigError, DataError


def test_probe_prompts_follow_rwku():
    from ulmr.eval.rwku import probe_prompt

    assert probe_prompt("FB", {"query": "He is an American ___"}) == (
        "Please complete the blank in the following question.\nQuestion: He is an American ___\n", "Answer:")
    assert probe_prompt("QA", {"query": "Who?", "type": "simple question"}) == (
        "Please briefly answer the following question.\nQuestion: Who?\n", "Answer:")
    assert probe_prompt("AA", {"query": "Where? Sure, here is the answer:", "type": "affirmative suffix"}) == (
        "Please briefly answer the following question.\nQuestion: Where? Sure, here is the answer:", "")
    assert probe_prompt("AA", {"query": "Question: a\nAnswer: b\nQuestion: c", "type": "incontext learning"}) == (
        "Please briefly answer the following question.\nQuestion: a\nAnswer: b\nQuestion: c\n", "Answer:")
    assert probe_prompt("AA", {"query": "Who?", "type": "role play"})[1] == "Answer:"


def test_target_folder_with_commas(rwku_dir):
    from ulmr.data.rwku import load_rwku

    t = load_rwku(rwku_dir, 10, ("forget_level2",))
    assert t.name == "10_Prince_Harry,_Duke_of_Sussex" and t.subject == "Prince Harry, Duke of Sussex"
    assert load_rwku(rwku_dir, 1, ("forget_level1",)).name == "1_Stephen_King"
    with pytest.raises(DataError, match="no folder for target 999"):
        load_rwku(rwku_dir, 999)


def test_mmlu_limit_is_stratified():
    from ulmr.eval.rwku import _stratified

    rows = [{"task": t, "i": i} for t in "abc" for i in range(3)]
    assert [(r["task"], r["i"]) for r in _stratified(rows, 4)] == [("a", 0), ("b", 0), ("c", 0), ("a", 1)]
    assert _stratified(rows, None) == rows


def test_utility_easy_set_is_valid_and_balanced():
    from collections import Counter

    from ulmr.eval.utility import load_utility_easy

    items = load_utility_easy()
    assert len(items) >= 100
    counts = Counter(it.answer for it in items)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(len(it.choices) == 4 and len(set(it.choices)) == 4 for it in items)
    assert len({it.question for it in items}) == len(items)


@pytest.fixture(scope="module")
def rwku_result(tiny, rwku_dir):
    from ulmr.eval.rwku import evaluate_rwku

    return evaluate_rwku(*tiny, rwku_dir, target=1, limit=2, utility="mmlu", extra=("truthfulqa", "triviaqa"),
                         batch_size=8)


def test_rwku_end_to_end(rwku_result):
    r = rwku_result
    assert r["target"] == "1_Stephen_King" and r["subject"] == "Stephen King"
    for k in ("forget_fb", "forget_qa", "forget_aa", "neighbor_fb", "neighbor_qa", "mia_forget", "mia_retain", "mmlu"):
        assert r["n"][k] == 2, k
    f = r["forget"]
    assert f["All"] == pytest.approx((f["FB"] + f["QA"] + f["AA"]) / 3)
    rec = r["items"]["forget_qa"][0]
    assert rec["prompt"].endswith("<|im_start|>assistant\nAnswer:") and rec["generated"]
    assert all(0 <= x["rouge_l_recall"] <= 100 for x in r["items"]["forget_fb"])
    fm = [x["mean_nll"] for x in r["items"]["mia_forget"]]
    assert r["mia"]["FM"] == pytest.approx(100 * sum(fm) / len(fm))
    assert set(r["utility"]) == {"Gen", "Tru", "Fac"}
    assert r["utility"]["Gen"] == pytest.approx(100 * sum(x["correct"] for x in r["items"]["mmlu"]) / 2)
    mmlu = r["items"]["mmlu"][0]["prompt"]
    assert mmlu.count("Answer:") == 6  # 5 shots + the cue after the generation prompt (RWKU's layout)
    assert "\nPlease following the previous examples and answer the given question.\nQuestion: " in mmlu
    assert mmlu.endswith("<|im_end|>\n<|im_start|>assistant\nAnswer:")
    smollm_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's default
    assert smollm_system in mmlu and smollm_system in rec["prompt"]


def test_pool_items(tiny, rwku_dir, rwku_result):
    from ulmr.data.rwku import load_rwku
    from ulmr.eval.rwku import evaluate_rwku

    tgt = load_rwku(rwku_dir, 1)
    r = evaluate_rwku(*tiny, tgt, limit=1, utility="easy", pool="items", batch_size=32)
    scores = [x["rouge_l_recall"] for k in ("forget_fb", "forget_qa", "forget_aa") for x in r["items"][k]]
    assert r["forget"]["All"] == pytest.approx(sum(scores) / len(scores))
    assert 0 <= r["utility"]["Easy"] <= 100 and r["n"]["utility_easy"] >= 100
    easy = r["items"]["utility_easy"][0]
    assert easy["question"].endswith(" Answer in a few words.") and len(easy["option_nll_sums"]) == 4
    with pytest.raises(ConfigError):
        evaluate_rwku(*tiny, tgt, utility="hard")


def test_cli_rwku(tiny_model_dir, rwku_dir, tmp_path):
    from typer.testing import CliRunner

    from ulmr.cli import app

    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["eval", "rwku", "--model", str(tiny_model_dir), "--data", str(rwku_dir), "--target", "2",
                                   "--limit", "1", "--utility", "mmlu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["target"] == "2_Confucius" and "Gen" in s["utility"]
    assert "Forget FB / QA / AA / All" in (out / "table.md").read_text()
    items = json.loads((out / "per_item.json").read_text(encoding="utf-8"))["items"]
    smollm_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    mmlu = items["mmlu"][0]["prompt"]
    assert "Please following the previous examples and answer the given question.\n" in mmlu and smollm_system in mmlu
    assert items["forget_fb"][0]["prompt"].startswith("<|im_start|>system\n" + smollm_system)
