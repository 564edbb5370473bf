"""Interruption: ``ulmr unlearn`` SIGKILLed mid-generation or mid-training resumes on rerun without
redoing finished work, and ends with the same result as an uninterrupted run; ``--fresh`` starts over."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from scripts.robust import kill, load_weights, read_jsonl, run_cli, start_cli, wait_until, write_forget

# Generation that ends fast on a random model: one round per slot, then the template fallback.
FAST_GEN = "max_tries: 1\n"


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "opts.yaml"
    p.write_text(FAST_GEN, encoding="utf-8")
    return p


def _gen_args(model: Path, forget: Path, out: Path, config: Path) -> list[str]:
    return ["unlearn", "--model", str(model), "--forget", str(forget), "--out", str(out), "--config", str(config),
            "--num-rewrites", "1", "--max-new-tokens", "4", "--gen-batch-size", "4", "--temperature", "0",
            "--anchor", "none", "--batch-size", "4"]


def _work(out: Path) -> Path:
    return out.parent / f".{out.name}.work"


def _attempt_keys(rows: list[dict]) -> list[tuple]:
    return [(r["source_index"], r["kind"], r["slot"], r["round"]) for r in rows]


def test_kill_mid_generation_then_rerun_generates_only_the_rest(tiny_model_dir, tmp_path):
    items = 10  # x (1 rewrite + 1 probe + 2 negatives) = 40 generated attempts, 10 batches
    forget = write_forget(tmp_path / "forget.jsonl", items)
    out = tmp_path / "out"
    args = _gen_args(tiny_model_dir, forget, out, _config(tmp_path)) + ["--max-steps", "1"]
    cache = _work(out) / "generation_cache.jsonl"
    log = tmp_path / "run1.log"

    proc = start_cli(*args, hooks=("--gen-sleep", "0.5"), log=log)
    wait_until(lambda: len(read_jsonl(cache)) > 0, proc, "the first cached generations", log)
    kill(proc)
    assert not out.exists()
    before = read_jsonl(cache)
    assert len(set(_attempt_keys(before))) == len(before)
    generated_before = sum(r["status"] != "fallback" for r in before)
    assert 0 < generated_before < 4 * items, "the kill must land mid-generation"

    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    record = json.loads((out / "ulmr_run.json").read_text())
    counts = record["counts"]
    # Every slot was generated exactly once over the two processes: nothing cached was redone.
    assert counts["attempts"] == 4 * items
    assert counts["generated_this_run"] == 4 * items - generated_before
    records = out.with_name(out.name + ".records")  # the run's records sit beside the model directory
    dfr = read_jsonl(records / "d_fr.jsonl")
    assert len(dfr) == (records / "d_fr.jsonl").read_text().count("\n") == 2 * items
    assert sorted((r["source_index"], r["rewrite_id"]) for r in dfr) == [(i, j) for i in range(items) for j in range(2)]
    assert all(r["question"].strip() and r["answer"].strip() for r in dfr)
    assert len(read_jsonl(records / "probe.jsonl")) == items and not (out / "d_fr.jsonl").exists()
    assert not _work(out).exists()


def _complete_checkpoints(ckpt_dir: Path) -> list[int]:
    steps = []
    for c in ckpt_dir.glob("checkpoint-*"):
        try:
            json.loads((c / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(c.name.split("-")[1]))
    return sorted(steps)


def test_kill_mid_training_resumes_from_checkpoint_with_identical_weights(tiny_model_dir, tmp_path):
    from ulmr import unlearn

    base_sha = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    forget = write_forget(tmp_path / "forget.jsonl", 3)  # D_fr: 6 rows
    config = _config(tmp_path)
    steps = 6
    train = ["--batch-size", "1", "--max-steps", str(steps), "--checkpoint-steps", "2", "--lr", "1e-3"]

    ref = tmp_path / "ref"
    unlearn(str(tiny_model_dir), forget, ref, max_tries=1, num_rewrites=1, max_new_tokens=4, gen_batch_size=4,
            temperature=0.0, anchor="none", batch_size=1, max_steps=steps, checkpoint_steps=2, lr=1e-3)

    out = tmp_path / "out"
    args = _gen_args(tiny_model_dir, forget, out, config) + train
    ckpts = _work(out) / "checkpoints"
    log = tmp_path / "run1.log"
    proc = start_cli(*args, hooks=("--step-sleep", "0.5", "--step-log", str(tmp_path / "steps1.log")), log=log)
    wait_until(lambda: bool(_complete_checkpoints(ckpts)), proc, "the first complete checkpoint", log)
    kill(proc)
    last = _complete_checkpoints(ckpts)[-1]
    assert last < steps and not out.exists()
    # A kill can also land while the Trainer writes the next checkpoint: leave one half-written.
    torn = ckpts / f"checkpoint-{last + 2}"
    shutil.copytree(ckpts / f"checkpoint-{last}", torn)
    (torn / "trainer_state.json").write_text('{"global_step": ')

    step_log = tmp_path / "steps2.log"
    res = run_cli(*args, hooks=("--step-log", str(step_log)))
    assert res.returncode == 0, res.stderr
    ran = [int(s) for s in step_log.read_text().split()]
    assert ran == list(range(last, steps)), f"resumed at {ran[:1]}, expected {last} (no finished step redone)"
    assert json.loads((out / "ulmr_run.json").read_text())["training"]["steps"] == steps

    got, want = load_weights(out), load_weights(ref)
    assert got.keys() == want.keys()
    base = load_weights(tiny_model_dir)
    assert any(not torch.equal(want[k], base[k]) for k in want), "training changed nothing; the comparison is vacuous"
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)
    assert hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest() == base_sha, "base modified in place"


def test_fresh_ignores_cached_generations_and_checkpoints(tiny_model_dir, tmp_path, monkeypatch):
    import ulmr.pipeline
    from ulmr import unlearn

    forget = write_forget(tmp_path / "forget.jsonl", 2)
    out = tmp_path / "out"
    opts = dict(max_tries=1, num_rewrites=1, max_new_tokens=4, gen_batch_size=8, temperature=0.0, anchor="none",
                batch_size=4, max_steps=1)

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # as if stopped right after generation

    with monkeypatch.context() as m:
        m.setattr(ulmr.pipeline, "train_unlearn", interrupted)
        with pytest.raises(KeyboardInterrupt):
            unlearn(str(tiny_model_dir), forget, out, **opts)
    work = _work(out)
    assert read_jsonl(work / "generation_cache.jsonl")
    # A stale checkpoint from an older run: resuming from it would be wrong (it is past max_steps).
    stale = work / "checkpoints" / "checkpoint-999"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text('{"global_step": 999}')

    record = unlearn(str(tiny_model_dir), forget, out, fresh=True, **opts).record
    assert record["counts"]["generated_this_run"] == record["counts"]["attempts"] == 8
    assert record["training"]["steps"] == 1


def test_train_unlearn_skips_a_half_written_checkpoint(tiny_model_dir, tmp_path):
    from ulmr.data.records import QARecord
    from ulmr.models import load
    from ulmr.train import TrainConfig, train_unlearn

    torn = tmp_path / "checkpoints" / "checkpoint-2"
    torn.mkdir(parents=True)
    (torn / "trainer_state.json").write_text('{"global_step": ')
    model, tok = load(str(tiny_model_dir))
    forget = [QARecord("Where does Zorblat Quenn live?", "I'm not able to help with that.")] * 2
    result = train_unlearn(model, tok, forget, None, TrainConfig(method="ulmr", max_steps=1, batch_size=2), tmp_path)
    assert result.steps == 1
    assert not torn.exists()  # removed, not left for the Trainer's checkpoint rotation


def test_last_complete_checkpoint_orders_by_step_and_skips_torn_ones(tmp_path):
    from ulmr.training.checkpoints import drop_incomplete_checkpoints, last_complete_checkpoint

    for step, state in ((9, '{"global_step": 9}'), (10, '{"global_step": 10}'), (11, '{"global_')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-12").mkdir()  # no state file at all
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"  # numeric order, not "9" > "10"
    drop_incomplete_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-9"]
    assert last_complete_checkpoint(tmp_path / "missing") is None
