"""ULMR, SFT stage: plain NLL on the restructured forget set D_fr (answers are already refusals or
negative responses), plus ``retain_weight`` × NLL on paired retain rows when a retain set is given."""

from __future__ import annotations

from .base import Method
from .common import part_nll


# Default learning rate by model size (parameters below the bound -> lr). 1e-5 is the usual SFT rate
# for 1B-7B models; a 135M model barely moves at it (measured on the demo set, 18 steps: forget
# ROUGE-L 0.85 -> 0.78), and small models are fine-tuned at higher rates.
LR_BY_SIZE: tuple[tuple[float, float], ...] = ((5e8, 2e-4), (3e9, 5e-5))


class ULMR(Method):
    """loss = NLL(D_fr) + λ·NLL_r; λ = 1, 3 epochs; lr 2e-4 below 0.5B parameters, 5e-5 below 3B, else 1e-5."""

    name = "ulmr"
    retain = "optional"
    forget_nll_rises = False
    lr = 1e-5
    epochs = 3.0
    default_retain_weight = 1.0

    @classmethod
    def default_lr(cls, n_params: int) -> float:
        return next((lr for bound, lr in LR_BY_SIZE if n_params < bound), cls.lr)

    def loss(self, model, batch, ref=None):
        return part_nll(model, batch, "forget") + self.retain_nll(model, batch)
