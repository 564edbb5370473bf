"""Negative Preference Optimisation: DPO with the forget answer as the only (dispreferred) response."""

from __future__ import annotations

from .base import BASELINE_LR_BY_SIZE, Method
from .common import npo_term


class NPO(Method):
    """loss = −(2/β)·log σ(−β(log π_θ(y_f) − log π_ref(y_f))) + w·NLL_r.

    β = 0.1, w = 1 (on by default, added when a retain set is given), lr 5e-5 below 0.5B parameters else 1e-5, 3 epochs.
    The reference log-probs are precomputed once per item.
    """

    name = "npo"
    display_name = "NPO"
    forget_only_in = ("rwku",)  # RWKU's NPO: forget side only
    retain = "optional"
    ref_logp_parts = ("forget",)
    lr = 1e-5
    lr_by_size = BASELINE_LR_BY_SIZE  # 5e-5 below 0.5B parameters
    epochs = 3.0
    default_beta = 0.1
    default_retain_weight = 1.0

    def loss(self, model, batch, ref=None):
        return npo_term(model, ref, batch, "forget", self.beta) + self.retain_nll(model, batch)
