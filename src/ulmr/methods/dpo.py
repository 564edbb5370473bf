"""DPO with a refusal preferred over the forget answer (IdkDPO)."""

from __future__ import annotations

import torch.nn.functional as F

from .base import BASELINE_LR_BY_SIZE, Method
from .common import part_logp, ref_part_logp


class DPO(Method):
    """loss = −(2/β)·log σ(β[(log π_θ − log π_ref)(refusal) − (log π_θ − log π_ref)(answer)]) + w·NLL_r.

    β = 0.1, w = 1 (the retain term is added only when a retain set is given), lr 5e-5 below 0.5B parameters else 1e-5, 3 epochs.
    Sequence log-probs sum over answer tokens including EOS; the reference terms are precomputed.
    """

    name = "dpo"
    display_name = "DPO"
    forget_only_in = ("rwku",)  # RWKU's DPO: forget side only
    retain = "optional"
    ref_logp_parts = ("pref", "forget")
    needs_preferred = True
    lr = 1e-5
    lr_by_size = BASELINE_LR_BY_SIZE  # 5e-5 below 0.5B parameters
    epochs = 3.0
    default_beta = 0.1
    default_retain_weight = 1.0

    def loss(self, model, batch, ref=None):
        pref = part_logp(model, batch, "pref") - ref_part_logp(ref, batch, "pref")
        answer = part_logp(model, batch, "forget") - ref_part_logp(ref, batch, "forget")
        dpo = -(2.0 / self.beta) * F.logsigmoid(self.beta * (pref - answer)).mean()
        return dpo + self.retain_nll(model, batch)
