"""The trainer under ``accelerate launch --cpu --num_processes 2`` (DDP over gloo) on the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("ddp_train.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: int = 90) -> None:
    env = {**os.environ, "ULMR_QUIET": "1", "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_two_processes_train_and_save_like_one(tiny_model_dir, tokenizer, tmp_path):
    """2 processes x batch 2 (DDP over gloo) against 1 process x batch 4: the same global batches, so the
    same per-step losses and final weights (within 1e-5)."""
    from ddp_train import FORGET, RETAIN
    from ulmr.data.chat import ChatFormat

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate CLI not installed")
    cf = ChatFormat(tokenizer)
    for rows in (FORGET, RETAIN):  # equal lengths: no padding, equal token counts per row
        assert len({(len(e.input_ids), e.answer_len) for e in (cf.encode(r["question"], r["answer"]) for r in rows)}) == 1
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(SCRIPT), str(tiny_model_dir), str(one), "graddiff", "4"])
    # `--cpu` alone runs one process in accelerate 1.15 (its simple launcher); `--multi_gpu` starts torchrun,
    # and on this GPU-less machine the processes join over gloo (ACCELERATE_USE_CPU / TrainingArguments.use_cpu).
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(SCRIPT), str(tiny_model_dir), str(two),
          "graddiff", "2"])

    r1 = json.loads((one / "result.json").read_text())
    r2 = json.loads((two / "result.json").read_text())
    assert r1["world_size"] == 1 and r2["world_size"] == 2
    # 8 rows, global batch 4: 2 optimizer steps either way
    assert (r1["steps"], r2["steps"]) == (2, 2)
    assert r1["train_tokens"] == r2["train_tokens"]  # every row seen once, counted over both processes
    assert len(r1["losses"]) == len(r2["losses"]) == 2
    assert r1["losses"] == pytest.approx(r2["losses"], abs=1e-5)
    assert sorted(p.name for p in (one / "model").iterdir()) == sorted(p.name for p in (two / "model").iterdir())
    assert [p.name for p in (two / "checkpoints").iterdir()] == ["checkpoint-2"]
    init = load_file(tiny_model_dir / "model.safetensors")
    alone = load_file(one / "model" / "model.safetensors")
    ddp = load_file(two / "model" / "model.safetensors")
    assert alone.keys() == ddp.keys() == init.keys()
    assert any(not torch.equal(init[k], ddp[k]) for k in init)
    for k in alone:
        torch.testing.assert_close(ddp[k], alone[k], rtol=0, atol=1e-5, msg=lambda m: f"{k}: {m}")
