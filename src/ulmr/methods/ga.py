"""Gradient Ascent: maximise the forget answers' NLL."""

from __future__ import annotations

from .base import BASELINE_LR_BY_SIZE, Method
from .common import part_nll


class GradientAscent(Method):
    """loss = −NLL_f (token mean); lr 5e-5 below 0.5B parameters else 1e-5, 3 epochs."""

    name = "ga"
    display_name = "Gradient Ascent"
    lr = 1e-5
    lr_by_size = BASELINE_LR_BY_SIZE  # 5e-5 below 0.5B parameters
    epochs = 3.0

    def loss(self, model, batch, ref=None):
        return -part_nll(model, batch, "forget")
