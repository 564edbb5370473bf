"""The saved model directory is a shareable Hugging Face model: a model card with Hub metadata, nothing of the
forget set (its hash and size only); the run's records (D_fr, probes, full run record) sit beside it in OUT.records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# Generation that ends fast on a random model (one round per slot, then the template fallback), one step.
FAST_ULMR = ["--num-rewrites", "1", "--max-new-tokens", "4", "--gen-batch-size", "4", "--temperature", "0",
             "--anchor", "none", "--answer-source", "data", "--max-steps", "1", "--batch-size", "2", "--max-length", "64",
             "--checkpoint-steps", "0"]


def _forget_texts(qa_file: Path) -> list[str]:
    rows = [json.loads(l) for l in qa_file.read_text(encoding="utf-8").splitlines()]
    return [r[k] for r in rows for k in ("question", "answer")]


def _leaks(model_dir: Path, texts: list[str]) -> list[tuple[str, str]]:
    """(file, text) for every forget text found in any file's bytes under ``model_dir`` (raw and JSON-escaped)."""
    found = []
    for path in model_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for t in texts:
                forms = {t.encode(), json.dumps(t).strip('"').encode(), json.dumps(t, ensure_ascii=False).strip('"').encode()}
                if any(f in data for f in forms):
                    found.append((str(path.relative_to(model_dir)), t))
    return found


def _card(model_dir: Path):
    from huggingface_hub import ModelCard

    card = ModelCard.load(model_dir / "README.md")
    assert card.data.base_model and card.data.library_name == "transformers"
    assert {"unlearning", "ulmr"} <= set(card.data.tags)
    return card


def test_unlearn_model_dir_has_a_card_and_nothing_of_the_forget_set(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    from ulmr.sweep import resolve_probe
    from ulmr.verify.hook import run_settings

    out = tmp_path / "runs" / "u"
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(out), *FAST_ULMR)
    assert code == 0, err
    card = _card(out)
    assert card.data.base_model == "tiny-llama" and card.data.license is None  # the tiny base has no card
    texts = _forget_texts(qa_file)
    assert not _leaks(out, texts)
    assert not (out / "d_fr.jsonl").exists() and not (out / "probe.jsonl").exists()
    assert "u.records" in card.text and "items were forgotten" in card.text

    records = tmp_path / "runs" / "u.records"
    assert {"d_fr.jsonl", "probe.jsonl", "ulmr_run.json"} <= {p.name for p in records.iterdir()}
    assert _leaks(records, texts)  # the records do hold the forget set (the D_fr rows keep original_answer)
    public = json.loads((out / "ulmr_run.json").read_text(encoding="utf-8"))
    full = json.loads((records / "ulmr_run.json").read_text(encoding="utf-8"))
    assert public["inputs"]["forget"] == {"sha256": full["inputs"]["forget"]["sha256"], "items": 3}
    assert public["settings"]["forget"] is None and str(qa_file) not in (out / "ulmr_run.json").read_text(encoding="utf-8")
    assert full["settings"]["forget"] == str(qa_file) and public["records"] == "u.records"
    assert public["counts"] == full["counts"] and public["counts"]["d_fr_rows"] > 0
    assert full["inputs"]["forget"]["sha256"] in card.text
    # the readers find the records: `ulmr verify`'s defaults and `ulmr sweep`'s probe
    assert run_settings(out)["forget"] == str(qa_file)
    probes, source = resolve_probe(out, None, None)
    assert source == str(records / "probe.jsonl") and len(probes) == 3


def test_card_include_examples_shows_forget_questions(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    out = tmp_path / "u"
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(out), "--method", "ga",
                    "--anchor", "none", "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--checkpoint-steps", "0",
                    "--card-include-examples")
    assert code == 0, err
    card = _card(out)
    rows = [json.loads(l) for l in qa_file.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["question"] in card.text
    assert not any(r["answer"] in card.text for r in rows)
    assert not _leaks(out, [r["answer"] for r in rows])


def test_train_stage_output_has_a_card(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    out = tmp_path / "pf"
    code, err = cli("train", "--model", str(tiny_model_dir), "--data", str(qa_file), "--out", str(out), "--method", "ga",
                    "--anchor", "none", "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--checkpoint-steps", "0")
    assert code == 0, err
    assert "not averaged" in _card(out).text
    assert not _leaks(out, _forget_texts(qa_file))
    assert (tmp_path / "pf.records" / "ulmr_run.json").is_file()


def test_merge_output_has_a_card_with_the_base_license(cli, tiny_model_dir, tmp_path, one_thread):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "README.md").write_text("---\nlicense: mit\n---\n\n# a base\n", encoding="utf-8")
    code, err = cli("merge", "--base", str(base), "--finetuned", str(tiny_model_dir), "--alpha", "0.5", "--out", str(tmp_path / "m"))
    assert code in (0, None), err
    card = _card(tmp_path / "m")
    assert card.data.base_model == "base" and card.data.license == "mit" and "α = 0.5" in card.text


def test_embedded_base_is_apache_licensed(embedded):
    from ulmr.card import base_license, hub_base_model

    assert base_license(embedded) == "apache-2.0"
    assert hub_base_model(embedded) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model("org/model") == "org/model"


def test_card_shows_the_measured_figures_and_the_verify_summary():
    from ulmr.card import unlearn_card

    point = {"probe_rouge": 0.8, "probe_prob": 0.5, "retain_rouge": 0.9, "retain_refusal": 0.0, "utility": 0.7}
    record = {"settings": {"method": "ulmr", "model": "org/base", "lr": 1e-4}, "alpha": 0.4,
              "inputs": {"forget": {"sha256": "abc123", "items": 7}, "model": {"spec": "org/base", "dir": None}},
              "counts": {"forget_items": 7}, "training": {"steps": 5},
              "alpha_auto": {"chosen": 0.4, "rule": "lowest probe", "curve": [{"alpha": 0.0, **point},
                                                                             {"alpha": 0.4, **point, "probe_rouge": 0.2}]}}
    verify = {"passed": True, "checks": {"direct": True, "over_refusal": True},
              "rows": [{"check": "direct", "condition": "as asked", "n": 7, "base_rouge": 0.8, "unlearned_rouge": 0.1,
                        "recovery": 0.125, "prob_recovery": 0.25, "passed": True}],
              "over_refusal": {"base_rate": 0.0, "unlearned_rate": 0.05, "passed": True},
              "relearning": {"train_items": ["SECRET QUESTION?"]}}
    text = unlearn_card("u", record, verify=verify).text
    assert "| probe_rouge | 0.8 | 0.2 |" in text and "abc123" in text and "7 items were forgotten" in text
    assert "Overall: **PASS**" in text and "| direct | as asked | 7 | 0.8 | 0.1 | 0.125 | 0.25 | True |" in text
    assert "SECRET" not in text


def test_readers_fall_back_to_old_run_dirs(tmp_path):
    """Run directories saved before the records moved out keep probe.jsonl and ulmr_run.json in the model dir."""
    from ulmr.paths import find_run_file
    from ulmr.sweep import resolve_probe
    from ulmr.verify.hook import run_settings

    old = tmp_path / "old"
    old.mkdir()
    (old / "probe.jsonl").write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n", encoding="utf-8")
    (old / "ulmr_run.json").write_text(json.dumps({"settings": {"forget": "f.jsonl", "model": "m"}}), encoding="utf-8")
    assert find_run_file(old, "probe.jsonl") == old / "probe.jsonl"
    assert run_settings(old)["forget"] == "f.jsonl"
    assert resolve_probe(old / "finetuned", None, None)[1] == str(old / "probe.jsonl")
    assert find_run_file(tmp_path / "none", "probe.jsonl") is None and run_settings(tmp_path / "none") is None


def test_verify_without_records_names_where_the_forget_path_went(tmp_path):
    from ulmr.commands.verify import _defaults
    from ulmr.errors import ConfigError

    model = tmp_path / "u"
    model.mkdir()
    (model / "ulmr_run.json").write_text(json.dumps({"settings": {"forget": None, "model": "m"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"u\.records/ulmr_run\.json"):
        _defaults(str(model), None, None)


def test_verify_summary_lands_on_the_card(cli, tiny_model_dir, qa_file, tmp_path, monkeypatch, one_thread):
    """``--verify``: the summary goes on the card (numbers only), the report (which names items) to OUT.records."""
    import ulmr.pipeline

    calls = []
    summary = {"passed": False, "checks": {"direct": False}, "relearning": {"train_items": ["Where was Mara Velquist born?"]},
               "rows": [{"check": "direct", "condition": "as asked", "n": 3, "base_rouge": 0.5, "unlearned_rouge": 0.4,
                         "recovery": 0.8, "passed": False}]}
    monkeypatch.setattr(ulmr.pipeline, "run_verify_after_unlearn", lambda out, cfg: calls.append(out) or summary)
    out = tmp_path / "u"
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(out), "--method", "ga",
                    "--anchor", "none", "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--checkpoint-steps", "0",
                    "--verify")
    assert code == 0, err
    assert calls == [out]
    text = _card(out).text
    assert "Overall: **FAIL**" in text and "| direct | as asked | 3 | 0.5 | 0.4 | 0.8 | n/a | False |" in text
    assert not _leaks(out, _forget_texts(qa_file))
