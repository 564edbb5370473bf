"""KL minimisation: gradient ascent on the forget set, KL(p_ref || p_θ) to the model before unlearning on
retain batches (averaged over answer tokens)."""

from __future__ import annotations

import torch

from .base import BASELINE_LR_BY_SIZE, Method
from .common import answer_kl, part_logits, part_nll, ref_part_logits


class KLMin(Method):
    """loss = −NLL_f + w·KL(p_ref || p_θ)_retain; w = 1, lr 5e-5 below 0.5B parameters else 1e-5, 3 epochs. Needs the live reference."""

    name = "kl"
    display_name = "KL Minimization"
    retain = "required"
    needs_ref_model = True
    retain_losses = ("kl",)
    lr = 1e-5
    lr_by_size = BASELINE_LR_BY_SIZE  # 5e-5 below 0.5B parameters
    epochs = 3.0
    default_retain_weight = 1.0

    def loss(self, model, batch, ref=None):
        with torch.no_grad():
            ref_logits, _ = ref_part_logits(ref, batch, "retain")
        logits, labels = part_logits(model, batch, "retain")
        kl = answer_kl(ref_logits, logits, labels)
        return -part_nll(model, batch, "forget") + self.retain_weight * kl
