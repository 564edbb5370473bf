"""Answer probabilities from answer-token NLLs.

- p̄(a|q) = exp(-mean answer-token NLL) (the per-token geometric mean probability).
- Over options (TOFU Real Authors / World Facts): P = p̄(correct) / (p̄(correct) + Σ_wrong p̄(wrong)).
"""

from __future__ import annotations

import math
from typing import Sequence


def prob_from_nll(mean_nll: float) -> float:
    """p̄ = exp(-mean NLL); 0 for an infinite NLL (no answer tokens)."""
    return math.exp(-mean_nll) if math.isfinite(mean_nll) else 0.0


def option_probability(correct_nll: float, wrong_nlls: Sequence[float]) -> float:
    """p̄(correct) / (p̄(correct) + Σ p̄(wrong)), computed stably from mean NLLs (log-sum-exp)."""
    logits = [-correct_nll] + [-x for x in wrong_nlls]
    top = max(logits)
    if not math.isfinite(top):
        return 0.0
    denom = sum(math.exp(v - top) for v in logits)
    return math.exp(logits[0] - top) / denom
