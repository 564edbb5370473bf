"""Retraining: fine-tune on the retain set only (start it from the base model, not the target)."""

from __future__ import annotations

from .base import Method
from .common import part_nll


class Retrain(Method):
    """loss = NLL_r; forget rows are ignored. lr 1e-5, 5 epochs (TOFU's retain-model recipe)."""

    name = "retrain"
    display_name = "Retraining"
    starts_from_base = True
    benchmarks = ("tofu",)  # TOFU's retain model; RWKU has no retraining oracle
    uses_forget = False
    retain = "required"
    forget_nll_rises = False
    lr = 1e-5
    epochs = 5.0

    def loss(self, model, batch, ref=None):
        return part_nll(model, batch, "retain")
