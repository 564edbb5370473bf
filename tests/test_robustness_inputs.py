"""The bad-input matrix through the CLI entry point (in process: same code path as ``ulmr``, no start-up
cost). Errors: exit 2, one ``error:`` line naming the file/line/field, no traceback. Warnings: one line,
the run goes on. Cases already in tests/test_cli_errors.py (missing file, malformed JSON line, renamed
fields, empty set, α range for unlearn, unknown model, existing output) are not repeated here."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from scripts.robust import assert_one_line_error


@pytest.fixture
def no_model_load(monkeypatch):
    """Bad input must be rejected before the (slow) model load."""
    import ulmr.merge
    import ulmr.models
    import ulmr.pipeline

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the input was validated")

    for mod in (ulmr.models, ulmr.pipeline, ulmr.merge):
        monkeypatch.setattr(mod, "load", refuse)
    monkeypatch.setattr(ulmr.models, "load_model", refuse)


def _unlearn(forget: Path, out: Path, *extra: str) -> list[str]:
    return ["unlearn", "--forget", str(forget), "--out", str(out), *extra]


# --------------------------------------------------------------------------- errors
def test_unreadable_encoding_names_file(cli, tmp_path, no_model_load):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(json.dumps({"question": "Où est né Zoë?", "answer": "À Zürich."}, ensure_ascii=False).encode("latin-1") + b"\n")
    assert_one_line_error(*cli(*_unlearn(f, tmp_path / "o")), "latin1.jsonl", "utf-8")


def test_missing_field_on_a_later_line_names_line_and_field(cli, tmp_path, no_model_load):
    f = tmp_path / "f.jsonl"
    rows = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}, {"question": "q3", "reply": "a3"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_one_line_error(*cli(*_unlearn(f, tmp_path / "o")), "f.jsonl:3", "'answer'", "--answer-field")


def test_custom_field_name_missing_is_named(cli, tmp_path, no_model_load):
    f = tmp_path / "f.csv"
    f.write_text("question,answer\nq1,a1\n")
    assert_one_line_error(*cli(*_unlearn(f, tmp_path / "o", "--question-field", "prompt")), "f.csv:2", "'prompt'")


def test_non_text_field_value_is_named(cli, tmp_path, no_model_load):
    f = tmp_path / "f.json"
    f.write_text(json.dumps([{"question": "q1", "answer": None}]))
    assert_one_line_error(*cli(*_unlearn(f, tmp_path / "o")), "f.json:1", "'answer'", "text")


@pytest.mark.parametrize("alpha", ["0", "-0.5", "1.5", "nan"])
def test_merge_alpha_out_of_range_or_nan(cli, tiny_model_dir, tmp_path, alpha, no_model_load):
    code, err = cli("merge", "--base", str(tiny_model_dir), "--finetuned", str(tiny_model_dir), "--alpha", alpha,
                    "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, "alpha")
    assert not (tmp_path / "m").exists()


def test_unknown_method_lists_known_methods_before_loading(cli, qa_file, tiny_model_dir, tmp_path, no_model_load):
    line = assert_one_line_error(*cli(*_unlearn(qa_file, tmp_path / "o", "--model", str(tiny_model_dir), "--method", "sgd")),
                                 "--method", "unknown method 'sgd'")
    from ulmr.methods.registry import METHODS

    assert all(m in line for m in METHODS)


def test_merge_unknown_model_path(cli, tiny_model_dir, tmp_path):
    code, err = cli("merge", "--base", str(tmp_path / "no" / "such"), "--finetuned", str(tiny_model_dir), "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, "no/such")


def test_merge_output_exists(cli, tiny_model_dir, tmp_path, no_model_load):
    (tmp_path / "m").mkdir()
    code, err = cli("merge", "--base", str(tiny_model_dir), "--finetuned", str(tiny_model_dir), "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, "exists", "--overwrite")


def test_unknown_model_for_generate(cli, qa_file, tmp_path):
    code, err = cli("generate", "--model", str(tmp_path / "nowhere"), "--forget", str(qa_file), "--out", str(tmp_path / "g"))
    assert_one_line_error(code, err, "unknown model", "nowhere")


# --------------------------------------------------------------------------- warnings: the run goes on
@pytest.fixture
def no_template_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with its chat template removed."""
    d = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, d)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def test_duplicates_long_answers_and_no_chat_template_warn_once_and_run_goes_on(cli, no_template_model, tmp_path, caplog):
    rows = [
        {"question": "Where does Zorblat Quenn live?", "answer": "In Varnholt."},
        {"question": "Where does Zorblat Quenn live?", "answer": "In Varnholt."},  # duplicate: kept once
        {"question": "What did Zorblat Quenn write?", "answer": " ".join(["A very long saga about Varnholt."] * 40)},
    ]
    f = tmp_path / "f.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING):
        code, err = cli(*_unlearn(f, out, "--model", str(no_template_model), "--method", "ga", "--max-steps", "1",
                                  "--anchor", "none", "--max-length", "48"))
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for needle in ("duplicate of line 1", "longer than the context", "no chat template"):
        hits = [w for w in warnings if needle in w]
        assert len(hits) == 1, (needle, warnings)
        assert "\n" not in hits[0].strip()
    counts = json.loads((out / "ulmr_run.json").read_text())["counts"]
    assert counts["forget_items"] == counts["train_rows"] == 2  # one duplicate dropped, the long answer kept
