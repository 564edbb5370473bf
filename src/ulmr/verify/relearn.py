"""Relearning attack: a few optimizer steps of plain fine-tuning on half of the forget set.

If the other half comes back, the knowledge was hidden rather than removed. Training runs on an
in-memory copy of the model with :func:`ulmr.train.train_unlearn` (method ``retrain`` = plain NLL on the
records passed as its retain set) and writes only into a temporary directory; the model on disk and the
model object handed in are never changed.
"""

from __future__ import annotations

import copy
import random
import tempfile
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import TrainerCallback

from ..data.records import QARecord
from ..errors import ConfigError
from ..methods.retrain import Retrain
from ..train import TrainConfig, train_unlearn


@dataclass
class Relearned:
    """The fine-tuned copy and the number of optimizer steps that ran."""

    model: object
    steps: int
    final_loss: float | None


class _StepCounter(TrainerCallback):
    """Counts optimizer steps (``on_step_end`` fires once per step, after gradient accumulation)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def split_indices(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, measured indices): a seeded shuffle; the first ``n // 2`` train, the rest are measured."""
    if n < 2:
        raise ConfigError("relearning needs at least 2 forget items (one to train on, one to measure)")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[: n // 2]), sorted(order[n // 2 :])


def split_halves(records: Sequence[QARecord], seed: int = 0) -> tuple[list[QARecord], list[QARecord]]:
    """(train half, measured half) of ``records`` by :func:`split_indices`."""
    train, test = split_indices(len(records), seed)
    return [records[i] for i in train], [records[i] for i in test]


def relearn(model, tokenizer, train: Sequence[QARecord], steps: int = 10, lr: float = 1e-4,
            batch_size: int = 4, seed: int = 0) -> Relearned:
    """Fine-tune a deep copy of ``model`` for exactly ``steps`` optimizer steps at a constant ``lr``."""

    cfg = TrainConfig(
        method=Retrain.name, lr=lr, max_steps=steps, epochs=1.0, batch_size=min(batch_size, len(train)),
        lr_scheduler="constant", warmup_ratio=0.0, checkpoint_steps=0, keep_checkpoints=False, logging_steps=1,
        seed=seed, num_threads=torch.get_num_threads(),
    )
    counter = _StepCounter()
    work = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="ulmr-relearn-") as tmp:
        # forget=[]: Retraining's loss trains on the retain argument only
        result = train_unlearn(work, tokenizer, [], list(train), cfg, tmp, resume=False, callbacks=[counter])
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    trained = result.model
    trained.eval()
    return Relearned(trained, counter.steps, losses[-1] if losses else None)
