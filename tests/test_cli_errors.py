"""Bad input through the real CLI: one line naming the file/line/field, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest


def run_cli(*args, env=None):
    import os

    e = dict(os.environ, ULMR_QUIET="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "ulmr.cli", *args], capture_output=True, text=True, env=e, timeout=120)


def _assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1, res.stderr
    for n in needles:
        assert n in err[0], err[0]


def test_missing_forget_file(tmp_path):
    res = run_cli("unlearn", "--model", "smollm2-135m", "--forget", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "nope.jsonl", "no such file")


def test_malformed_jsonl_names_line(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text('{"question": "a", "answer": "b"}\n{oops\n')
    res = run_cli("unlearn", "--forget", str(f), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "f.jsonl:2", "malformed JSON")


def test_wrong_field_names(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    res = run_cli("unlearn", "--forget", str(f), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "f.jsonl:1", "'question'")


@pytest.mark.parametrize("alpha", ["0", "1.5", "nan", "-1", "abc"])
def test_alpha_out_of_range(qa_file, tmp_path, alpha):
    res = run_cli("unlearn", "--forget", str(qa_file), "--out", str(tmp_path / "o"), "--alpha", alpha)
    _assert_one_line_error(res, "alpha")


@pytest.mark.parametrize("args,needle", [(["--answer-weight", "-0.1"], "--answer-weight: must be >= 0 (got -0.1)"),
                                          (["--method", "npo", "--answer-weight", "0.1"], "--answer-weight applies to ulmr only"),
                                          (["--method", "graddiff", "--beta", "0.5"], "--beta applies to ulmr, ulmr-paper, dpo, npo only"),
                                          (["--beta", "0"], "--beta: must be > 0 (got 0)"),
                                          (["--answer-source", "gold"], "--answer-source: must be 'model' or 'data' (got 'gold')")])
def test_bad_answer_weight_or_beta(qa_file, tmp_path, args, needle):
    res = run_cli("unlearn", "--forget", str(qa_file), "--out", str(tmp_path / "o"), *args)
    _assert_one_line_error(res, needle)


def test_unknown_model(qa_file, tmp_path):
    res = run_cli("unlearn", "--model", "./no/such/model", "--forget", str(qa_file), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "unknown model", "no/such/model")


def test_existing_output_dir(qa_file, tmp_path):
    (tmp_path / "o").mkdir()
    res = run_cli("unlearn", "--forget", str(qa_file), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "exists", "--overwrite")


def test_empty_forget_set(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text("")
    res = run_cli("unlearn", "--forget", str(f), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "empty")


def test_debug_shows_traceback(tmp_path):
    res = run_cli("--debug", "unlearn", "--forget", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_validation_message_names_the_option_as_a_flag():
    from pydantic import BaseModel, Field, ValidationError, model_validator

    from ulmr.errors import validation_message

    class Options(BaseModel):
        max_new_tokens: int = Field(1, ge=1)

        @model_validator(mode="after")
        def _pair(self):
            if self.max_new_tokens == 7:
                raise ValueError("7 clashes with the other option")
            return self

    with pytest.raises(ValidationError) as field_error:
        Options(max_new_tokens=0)
    assert validation_message(field_error.value) == "--max-new-tokens: must be >= 1 (got 0)"
    with pytest.raises(ValidationError) as model_error:
        Options(max_new_tokens=7)
    assert validation_message(model_error.value) == "7 clashes with the other option"
