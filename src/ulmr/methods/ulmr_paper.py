"""ULMR as Shi et al. publish it: plain NLL on D_fr alone, D_fr generated with the paper's (absent)
filters, α 0.5. ``ulmr unlearn --recipe paper`` runs this method; the benchmarks show it as its own curve."""

from __future__ import annotations

from .ulmr import ULMR


class ULMRPaper(ULMR):
    """loss = NLL(D_fr): no retain or anchor term, no answer term; k = 2 rewrites, generation rejects only
    empty, identical and duplicate texts (template fallbacks stay, so a failed generation still yields a
    row); α 0.5. Learning rate by model size and epochs as :class:`~ulmr.methods.ulmr.ULMR` (the paper gives
    none for small models)."""

    name = "ulmr-paper"
    display_name = "ULMR (paper recipe)"
    retain = "never"
    default_retain_weight = 0.0
    uses_original = False
    default_answer_weight = 0.0
    generation_filters = "paper"
    retain_losses = ("nll",)  # no retain term at all
