"""Gradient Difference: ascend on the forget set, descend on the retain set."""

from __future__ import annotations

from .base import BASELINE_LR_BY_SIZE, Method
from .common import part_nll


class GradDiff(Method):
    """loss = −NLL_f + w·NLL_r; w = 1, lr 5e-5 below 0.5B parameters else 1e-5, 3 epochs."""

    name = "graddiff"
    display_name = "Gradient Difference"
    retain = "required"
    lr = 1e-5
    lr_by_size = BASELINE_LR_BY_SIZE  # 5e-5 below 0.5B parameters
    epochs = 3.0
    default_retain_weight = 1.0

    def loss(self, model, batch, ref=None):
        return -part_nll(model, batch, "forget") + self.retain_nll(model, batch)
