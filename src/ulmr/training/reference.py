"""The reference model (the model before unlearning): frozen, eval mode, no gradients.

With LoRA it is the trained model itself with the adapter disabled (no second copy); without LoRA,
methods that need it on every step (KL) get a frozen copy; DPO/NPO only need reference sequence
log-probs, which depend on the item alone and are computed once before training.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import torch

from ..methods.common import ref_part_logits, sequence_logp
from .data import PartCollator, Row


@contextmanager
def _eval_mode(model) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


class ModelReference:
    """Runs ``model`` under no_grad in eval mode; ``adapter_off`` disables its (peft) adapter first."""

    def __init__(self, model, adapter_off: bool = False):
        self.model = model
        self.adapter_off = adapter_off

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        off = self.model.disable_adapter() if self.adapter_off else nullcontext()
        with torch.no_grad(), _eval_mode(self.model), off:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep).logits


def frozen_copy(model, device: torch.device | str) -> ModelReference:
    """A frozen deep copy of ``model`` on ``device`` (full fine-tuning with a per-step reference)."""
    ref = copy.deepcopy(model).to(device)
    ref.eval()
    ref.requires_grad_(False)
    return ModelReference(ref)


def precompute_ref_logps(ref: ModelReference, rows: list[Row], parts: Sequence[str], pad_id: int, batch_size: int = 8) -> None:
    """Set ``row['<part>_ref_logp']`` (sequence log-prob under the reference) for every row, batched by
    length; run it before the first optimizer step."""
    device = next(ref.model.parameters()).device
    collator = PartCollator(pad_id)
    for part in parts:
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][part].input_ids))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            b = {k: v.to(device) for k, v in collator([{part: rows[i][part]} for i in idx]).items()}
            logp = sequence_logp(*ref_part_logits(ref, b, part))
            for i, v in zip(idx, logp.tolist()):
                rows[i][f"{part}_ref_logp"] = v
