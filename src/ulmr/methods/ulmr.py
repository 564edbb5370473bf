"""ULMR, SFT stage: plain NLL on the restructured forget set D_fr (answers are already refusals or
negative responses), plus ``retain_weight`` × NLL on paired retain rows when a retain set is given."""

from __future__ import annotations

from .base import Method
from .common import part_nll


class ULMR(Method):
    """loss = NLL(D_fr) + λ·NLL_r; λ = 1, lr 1e-5, 3 epochs."""

    name = "ulmr"
    retain = "optional"
    forget_nll_rises = False
    lr = 1e-5
    epochs = 3.0
    default_retain_weight = 1.0

    def loss(self, model, batch, ref=None):
        return part_nll(model, batch, "forget") + self.retain_nll(model, batch)
