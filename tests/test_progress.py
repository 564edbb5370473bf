"""Training progress: one rich bar (step, epoch, loss, it/s, ETA), no raw Trainer log dicts unless --verbose."""

from __future__ import annotations

import logging
import re

import pytest
from transformers import TrainerControl, TrainerState

from ulmr.training.trainer import TrainProgress


@pytest.fixture
def loud(monkeypatch):
    """Bars on (the cli fixture and CI set ULMR_QUIET=1); ULMR_VERBOSE and the Trainer's logger restored after."""
    monkeypatch.setenv("ULMR_QUIET", "0")
    monkeypatch.setenv("ULMR_VERBOSE", "0")
    trainer_log = logging.getLogger("transformers.trainer")
    level = trainer_log.level
    yield
    trainer_log.setLevel(level)


def test_callback_advances_the_bar_and_records_the_loss(loud, capsys):
    state, control = TrainerState(max_steps=4, global_step=1, epoch=0.25), TrainerControl()
    cb = TrainProgress()
    cb.on_train_begin(None, state, control)  # resumed after one step: the bar starts at 1
    task = cb.bar.tasks[0]
    assert (task.completed, task.total, task.fields["loss"]) == (1, 4, "-")
    state.global_step, state.epoch = 3, 0.75
    cb.on_step_end(None, state, control)
    cb.on_log(None, state, control, logs={"loss": 2.914, "grad_norm": 1.5, "learning_rate": 1e-4})
    assert (task.completed, task.fields["epoch"], task.fields["loss"], cb.loss) == (3, 0.75, "2.914", 2.914)
    cb.on_log(None, state, control, logs={"grad_norm": 0.1})  # no loss in it: the last one stays
    assert task.fields["loss"] == "2.914"
    state.global_step, state.epoch = 4, 1.0
    cb.on_step_end(None, state, control)
    cb.on_log(None, state, control, logs={"train_runtime": 1.0, "train_loss": 2.5})
    cb.on_train_end(None, state, control)
    assert cb.bar is None and cb.loss == 2.5
    err = capsys.readouterr().err
    assert "training" in err and "4/4" in err and "epoch 1.00" in err and "loss 2.500" in err and "it/s" in err


def test_callback_draws_nothing_on_other_processes_or_when_quiet(loud, monkeypatch, capsys):
    control = TrainerControl()
    other = TrainProgress()
    other.on_train_begin(None, TrainerState(max_steps=2, is_world_process_zero=False), control)
    other.on_log(None, TrainerState(), control, logs={"loss": 1.0})
    assert other.bar is None and other.loss == 1.0
    monkeypatch.setenv("ULMR_QUIET", "1")
    quiet = TrainProgress()
    quiet.on_train_begin(None, TrainerState(max_steps=2), control)
    quiet.on_train_end(None, TrainerState(max_steps=2), control)
    assert capsys.readouterr().err == ""


def _train(capsys, model_dir, data, out, *extra: str) -> str:
    from ulmr.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--method", "ga",
              "--anchor", "none", "--max-steps", "5", "--batch-size", "1", "--checkpoint-steps", "0", *extra])
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err
    return captured.out + captured.err


def test_training_prints_one_bar_and_no_log_dicts_unless_verbose(loud, capsys, tiny_model_dir, qa_file, tmp_path, one_thread):
    # 5 steps = logging_steps: the Trainer logs a loss once, which its printer would show as "{'loss': ...}".
    text = _train(capsys, tiny_model_dir, qa_file, tmp_path / "quiet")
    assert "{'loss'" not in text and "{'train_runtime'" not in text
    assert "Writing model shards" not in text and "%|" not in text  # no tqdm bar
    bar = [line for line in text.splitlines() if line.startswith("training")]
    assert len(bar) == 1 and "5/5" in bar[0] and re.search(r"loss -?\d+\.\d{3} ", bar[0]), text

    text = _train(capsys, tiny_model_dir, qa_file, tmp_path / "verbose", "--verbose")
    assert "{'loss'" in text and "5/5 [" in text  # the Trainer's printed logs and its tqdm bar
    assert not any(line.startswith("training ") for line in text.splitlines()), "the rich bar would double tqdm's"
