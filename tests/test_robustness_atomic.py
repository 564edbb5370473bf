"""Atomic outputs: a kill or a full disk during the final save leaves the old output or none, never a
broken one. (Unit-level atomic writes are covered by the pipeline itself; these go through the CLI.)"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from scripts.robust import assert_one_line_error, kill, start_cli, wait_until, write_forget

# No generation and one step: the save is what is under test.
FAST = ["--method", "ga", "--max-steps", "1", "--anchor", "none", "--batch-size", "2"]


def _assert_complete(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {"model.safetensors", "config.json", "tokenizer.json", "ulmr_run.json"} <= {p.name for p in out.iterdir()}
    json.loads((out / "ulmr_run.json").read_text())
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("had_output", [False, True], ids=["new", "overwrite"])
def test_kill_during_save_leaves_old_output_or_none(tiny_model_dir, tmp_path, had_output):
    forget = write_forget(tmp_path / "forget.jsonl", 2)
    out = tmp_path / "out"
    if had_output:
        shutil.copytree(tiny_model_dir, out)
        (out / "ulmr_run.json").write_text(json.dumps({"old": True}))
    signal = tmp_path / "saving"
    log = tmp_path / "run.log"
    args = ["unlearn", "--model", str(tiny_model_dir), "--forget", str(forget), "--out", str(out), *FAST]
    proc = start_cli(*args, *(["--overwrite"] if had_output else []),
                     hooks=("--save-signal", str(signal), "--save-sleep", "120"), log=log)
    wait_until(signal.exists, proc, "the save to start", log)
    kill(proc)

    if had_output:
        assert json.loads((out / "ulmr_run.json").read_text()) == {"old": True}
        _assert_complete(out)
    else:
        assert not out.exists(), "a killed save must not leave a partial output under the final name"


def test_disk_full_on_save_is_one_line_error_and_nothing_half_written(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import ulmr.pipeline
    from ulmr.cli import main

    def full_disk_save(model, tokenizer, out_dir):
        model.save_pretrained(out_dir, safe_serialization=True)  # part of the files, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ulmr.pipeline, "save_model", full_disk_save)
    monkeypatch.setenv("ULMR_QUIET", "1")
    forget = write_forget(tmp_path / "forget.jsonl", 2)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["unlearn", "--model", str(tiny_model_dir), "--forget", str(forget), "--out", str(out), *FAST])
    assert_one_line_error(exc.value.code, capsys.readouterr().err, "no space left on device", str(out))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.") and p.name.endswith(".tmp")]
    # The work directory survives, so the rerun after freeing space resumes instead of starting over.
    assert (tmp_path / ".out.work").is_dir()
