"""ULMR, SFT stage: plain NLL on the restructured forget set D_fr (answers are already refusals or
negative responses), plus ``retain_weight`` × NLL on paired retain rows when a retain set is given, plus
(``answer_weight``, default 0.2) an NPO term that lowers each row's original answer."""

from __future__ import annotations

import torch

from .base import Method
from .common import answer_kl, has_part, npo_term, part_logits, part_nll, ref_part_logits

# Default learning rate by model size (parameters below the bound -> lr). 1e-5 is the usual SFT rate
# for 1B-7B models; a 135M model barely moves at it (measured on the demo set, 18 steps: forget
# ROUGE-L 0.85 -> 0.78). 1e-4 is the rate measured best for the 135M model (docs/results/demo.md: at
# 2e-4 more neighbour facts were lost); 3e-5 for 0.5B-3B lies between and is not measured.
LR_BY_SIZE: tuple[tuple[float, float], ...] = ((5e8, 1e-4), (3e9, 3e-5))


class ULMR(Method):
    """loss = NLL(D_fr) + γ·NPO(key span of y) + λ·NLL_r; λ = 2, γ = 0.1, 3 epochs; lr 1e-4 below 0.5B
    parameters, 3e-5 below 3B, else 1e-5.

    λ = 2 rather than 1: measured on the demo set (lr 2e-4, α 0.5), λ = 1 left 12.5% of neighbour
    questions refused and 75% of neighbour facts named; λ = 2 gave 0% and 81% at the same forgetting.

    γ (``answer_weight``, NPO with β = ``beta``, 0.1) pushes down the key-span tokens of the answer each
    D_fr row replaced, which plain SFT on refusals barely does (demo set: the answers' probability went
    7.6% → 5.9% at α = 0.5), found where the model itself says them: in its own greedy answer to the row's
    question (:mod:`~ulmr.training.answer_text`). On the example set at α = 0.5, three seeds, it took
    held-out paraphrases from 43-55 to 20-30 ROUGE-L (base 67) with neighbour facts unchanged and easy multiple-choice
    utility within a point of plain SFT (docs/results/example_set.md). γ = 0.2 rather than that study's 0.03: on
    TOFU mini (seed 0, α 1) γ 0.03 left the forgotten answers' probability at 43% (retain model: 14%), γ 0.1 took
    it to 24%, γ 0.2 to 17% (forget quality 0.34, 0.83, 0.98) at no cost in utility; on the demo set (three seeds,
    α chosen by ``--alpha auto``) γ 0.2 passed the three checks at every seed and forgot more than γ 0.1 on the mean,
    where γ 0.3 failed the neighbour check at one seed (docs/results/ulmr_ablation.md §3, §6, §7). γ = 0 is the paper's plain SFT;
    rows without an ``original_answer`` column train without the term.

    The retain rows are the built-in anchor (general questions with the base model's own answers) *and* a
    given retain set (``anchor_with_retain``): on TOFU mini a retain set of fictitious authors alone let the
    refusals spread to questions about real authors (Real Authors ROUGE-L 9.7 -> 0 at α 1, MU below the
    utility floor at every α); with the anchor beside it, α 0.8 forgot to 15.8 ROUGE-L (all 40 items) at MU 35.6
    (docs/results/tofu.md, 2026-12-06).

    ``retain_loss="kl"`` (``--retain-loss kl``) replaces λ·NLL_r by λ·KL(p_θ || p) on the retain/anchor
    answers' positions: the anchor keeps the model's next-token distributions there instead of training on
    one sampled answer (the built-in anchor's answers are the base model's own greedy ones, wrong ones
    included). It needs the live reference model (one more forward per step).
    """

    name = "ulmr"
    display_name = "ULMR"
    generates_dfr = True
    default_alpha = 0.5  # the paper's
    retain = "optional"
    uses_original = True
    forget_nll_rises = False
    lr = 1e-5
    lr_by_size = LR_BY_SIZE
    epochs = 3.0
    default_beta = 0.1
    default_retain_weight = 2.0
    default_answer_weight = 0.2  # docs/results/ulmr_ablation.md §3, §7: demo set at 3 seeds, TOFU mini
    retain_losses = ("nll", "kl")
    anchor_with_retain = True

    def __init__(self, beta: float | None = None, retain_weight: float | None = None, answer_weight: float | None = None,
                 retain_loss: str = "nll"):
        super().__init__(beta=beta, retain_weight=retain_weight)
        self.answer_weight = self.default_answer_weight if answer_weight is None else answer_weight
        # Instance values: the reference log-probs of the original answers are needed only with the term,
        # the live reference only for the KL retain term.
        self.ref_logp_parts = ("original",) if self.answer_weight else ()
        self.retain_loss = retain_loss
        self.needs_ref_model = retain_loss == "kl"

    def retain_term(self, model, batch, ref) -> torch.Tensor | float:
        """λ·NLL_r, or λ·KL(p_θ || p) over the retain answers' positions (``retain_loss="kl"``); 0 without a retain part."""
        if self.retain_loss != "kl" or not (self.retain_weight and has_part(batch, "retain")):
            return self.retain_nll(model, batch)
        with torch.no_grad():
            ref_logits, _ = ref_part_logits(ref, batch, "retain")
        logits, labels = part_logits(model, batch, "retain")
        return self.retain_weight * answer_kl(ref_logits, logits, labels)

    def loss(self, model, batch, ref=None):
        loss = part_nll(model, batch, "forget") + self.retain_term(model, batch, ref)
        if self.answer_weight and has_part(batch, "original"):
            loss = loss + self.answer_weight * npo_term(model, ref, batch, "original", self.beta)
        return loss
