"""QA evaluator: return shape, truth ratio only with perturbed answers, over-refusal, CLI outputs."""

from __future__ import annotations

import json
import math

import pytest

from ulmr.data.records import QARecord


def _sets():
    forget = [QARecord("Who wrote 'The Silent Harbor'?", "Mara Velquist.",
                       extra={"paraphrased_answer": "It was Mara Velquist.", "perturbed_answer": ["John Smith.", "Ada Lee."]}),
              QARecord("Where was Mara born?", "Tromsø, Norway.",
                       extra={"paraphrased_answer": "In Tromsø.", "perturbed_answer": "Oslo, Norway."})]
    retain = [QARecord("What is the capital of France?", "Paris."), QARecord("What color is grass?", "Green.")]
    return {"forget": forget, "retain": retain}


def test_evaluate_qa_shape_and_formulas(tiny):
    from ulmr.eval.qa import evaluate_qa

    model, tok = tiny
    res = evaluate_qa(model, tok, _sets(), max_new_tokens=3, batch_size=4)
    assert set(res) == {"sets", "items"}
    f, r = res["sets"]["forget"], res["sets"]["retain"]
    assert set(f) == {"rougeL_recall", "prob", "truth_ratio", "refusal_rate", "n"}
    assert f["n"] == 2 and r["n"] == 2
    assert r["truth_ratio"] is None  # no perturbed answers
    items = res["items"]["forget"]
    assert len(items[0]["perturbed_nlls"]) == 2 and len(items[1]["perturbed_nlls"]) == 1  # a single perturbed answer
    rs = [math.exp(x["paraphrased_nll"] - sum(x["perturbed_nlls"]) / len(x["perturbed_nlls"])) for x in items]
    assert f["truth_ratio"] == pytest.approx(sum(min(x, 1 / x) for x in rs) / 2)  # forget form on 'forget'
    assert f["prob"] == pytest.approx(sum(math.exp(-x["answer_nll"]) for x in items) / 2)
    assert all("generated" in x and "prompt" in x for x in res["items"]["retain"])


def test_refusal_rate_counts_refusals(monkeypatch, tiny):
    import ulmr.eval.qa as qa

    monkeypatch.setattr(qa, "generate", lambda m, t, prompts, *a, **k: ["I don't know.", "Green."][: len(prompts)])
    res = qa.evaluate_qa(*tiny, {"retain": _sets()["retain"]}, max_new_tokens=2)
    assert res["sets"]["retain"]["refusal_rate"] == pytest.approx(0.5)
    assert res["items"]["retain"][0]["refusal"] is True
    assert res["sets"]["retain"]["rougeL_recall"] == pytest.approx(0.5)  # "Green." fully recalled, refusal 0


def test_cli_qa(tiny_model_dir, qa_file, tmp_path):
    from typer.testing import CliRunner

    from ulmr.cli import app

    retain = tmp_path / "retain.jsonl"
    retain.write_text(json.dumps({"q": "What is 2+2?", "a": "4"}) + "\n")
    forget = tmp_path / "f2.jsonl"
    forget.write_text("".join(json.dumps({"q": json.loads(l)["question"], "a": json.loads(l)["answer"]}) + "\n"
                              for l in qa_file.read_text().splitlines()))
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["eval", "qa", "--model", str(tiny_model_dir), "--forget", str(forget), "--retain", str(retain),
                                   "--question-field", "q", "--answer-field", "a", "--max-new-tokens", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["sets"]["forget"]["n"] == 3 and s["sets"]["retain"]["n"] == 1
    assert (out / "table.md").exists() and (out / "per_item.json").exists()


def test_cli_qa_missing_field_is_one_line_error(tiny_model_dir, qa_file):
    from ulmr.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "qa", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--question-field", "prompt"])
    assert e.value.code == 2


def test_demo_measure_reports_extra_sets_next_to_the_demo_numbers(tiny):
    from ulmr.demo import measure

    model, tok = tiny
    qa = [QARecord("Who wrote Hamlet?", "William Shakespeare"), QARecord("What is the capital of France?", "Paris")]
    sets = {"forget": qa, "paraphrase": qa[:1], "neighbour": qa[1:], "general": qa}
    numbers, items = measure(model, tok, sets)
    assert set(numbers) == {"forget_rouge", "forget_prob", "paraphrase_rouge", "neighbour_rouge", "neighbour_refusal",
                            "utility_acc", "general_rouge"}
    assert all(0.0 <= v <= 1.0 for v in numbers.values())
    assert {name: len(recs) for name, recs in items.items()} == {name: len(qa) for name, qa in sets.items()}


def test_demo_command_passes_seed_and_generator_dtype_overrides(cli, monkeypatch, tmp_path):
    import ulmr.demo

    seen = {}
    monkeypatch.setattr(ulmr.demo, "run_demo", lambda out, **kw: seen.update(out=out, **kw))
    code, _ = cli("demo", "--out", str(tmp_path), "--seed", "1", "--generator-dtype", "bfloat16")
    assert code == 0 and seen == {"out": tmp_path, "seed": 1, "generator_dtype": "bfloat16"}
