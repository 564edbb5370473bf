"""``UnlearnTrainer``: the Hugging Face Trainer with the loss delegated to a registered method."""

from __future__ import annotations

import math

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..methods.base import Method
from .data import RowDataset
from .reference import ModelReference


class UnlearnTrainer(Trainer):
    """Trainer whose ``compute_loss`` is ``method.loss(model, batch, reference)``.

    Everything else (optimizer, schedule, gradient accumulation, DDP/FSDP/DeepSpeed through accelerate,
    logging, checkpoints, resume) is the stock Trainer's.
    """

    def __init__(self, *args, method: Method, reference: ModelReference | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.reference = reference
        # The method's loss is a per-micro-batch mean: let the Trainer divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.tokens_seen = 0
        self.answer_tokens_seen = 0

    def _get_train_sampler(self, train_dataset=None):
        # The stock sampler reads lengths from an ``input_ids`` key; rows keep theirs per part.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, RowDataset):
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=dataset.lengths())
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.method.loss(model, inputs, self.reference)
        for key, t in inputs.items():
            if key.endswith("_attention_mask"):
                self.tokens_seen += int(t.sum())
            elif key.endswith("_labels"):
                self.answer_tokens_seen += int((t[:, 1:] != -100).sum())
        return (loss, None) if return_outputs else loss

    def total_tokens(self) -> tuple[int, int]:
        """(all, answer) tokens this call processed, summed over processes."""
        counts = torch.tensor([self.tokens_seen, self.answer_tokens_seen], device=self.args.device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return int(counts[0]), int(counts[1])


class RetainEpochCallback(TrainerCallback):
    """Tells the training set which epoch begins, so rows carry that epoch's retain pairing.

    ``state.epoch`` is fractional on resume from a mid-epoch checkpoint (e.g. 0.67 in epoch 0), and a
    finished epoch may read 0.9999999: hence floor with a small tolerance."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = math.floor((state.epoch or 0) + 1e-6)
