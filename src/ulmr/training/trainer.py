"""``UnlearnTrainer``: the Hugging Face Trainer with the loss delegated to a registered method."""

from __future__ import annotations

import math

import torch
from rich.progress import TextColumn
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..methods.base import Method
from ..progress import RateColumn, progress_bar
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


class TrainProgress(TrainerCallback):
    """One rich bar for training (step, epoch, loss, it/s, ETA), in place of the Trainer's tqdm bar and
    printed log dicts; on the main process only. ``loss`` is the last logged one (a mean over
    ``logging_steps``; at the end, the run's mean)."""

    def __init__(self):
        self.bar = None
        self.task = None
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.bar = progress_bar(TextColumn("epoch {task.fields[epoch]:.2f}  loss {task.fields[loss]}"), RateColumn())
        self.bar.start()
        # On resume the bar starts where the checkpoint left off.
        self.task = self.bar.add_task("training", total=state.max_steps, completed=state.global_step,
                                      epoch=state.epoch or 0.0, loss="-")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step, epoch=state.epoch or 0.0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss", (logs or {}).get("train_loss"))  # train_loss: the run's mean, at the end
        if loss is not None:
            self.loss = float(loss)
            if self.bar is not None:
                self.bar.update(self.task, loss=f"{self.loss:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Stop the bar (also after an interrupted run, so that the next bar can start)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
