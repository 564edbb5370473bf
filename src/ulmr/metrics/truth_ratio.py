"""Truth ratio, forget quality and model utility (TOFU).

- R = p̄_pert / p̄_para with p̄_pert the geometric mean over the perturbed answers of their p̄ and p̄ = exp(-mean
  answer NLL), so R = exp(NLL_para - mean_k NLL_pert_k) (computed in log space: no underflow).
- Forget form: mean(min(R, 1/R)); retain form (Retain, Real Authors, World Facts): mean(max(0, 1 - R)).
- Forget quality: p-value of ``scipy.stats.ks_2samp`` between the per-item *raw* R of the evaluated model and
  of the reference (retain) model.
- Model utility: ``scipy.stats.hmean`` of the 9 numbers {Retain, Real Authors, World Facts} x {P, R, TR};
  0 when any of them is 0.
"""

from __future__ import annotations

import math
from typing import Sequence


def truth_ratio(para_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """Raw R = exp(NLL_para - mean(NLL_pert)) = geometric-mean p̄ of perturbed answers / p̄ of the paraphrase."""
    if not perturbed_nlls:
        raise ValueError("truth ratio needs at least one perturbed answer")
    mean_pert = sum(perturbed_nlls) / len(perturbed_nlls)
    return math.exp(min(para_nll - mean_pert, 700.0))


def forget_truth_ratio(ratios: Sequence[float]) -> float:
    """mean(min(R, 1/R)) in [0, 1]: 1 when the model cannot tell true from perturbed answers."""
    return sum(min(r, 1.0 / r) if r > 0 else 0.0 for r in ratios) / len(ratios)


def retain_truth_ratio(ratios: Sequence[float]) -> float:
    """mean(max(0, 1 - R)) in [0, 1]: high when the true (paraphrased/correct) answer is preferred."""
    return sum(max(0.0, 1.0 - r) for r in ratios) / len(ratios)


def forget_quality(model_ratios: Sequence[float], reference_ratios: Sequence[float]) -> float:
    """KS-test p-value between the raw per-item R of the model and of the reference (retain) model."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(list(model_ratios), list(reference_ratios)).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """Harmonic mean of the 9 utility numbers; 0 when any is 0 (hmean would warn and divide by zero)."""
    from scipy.stats import hmean

    if len(values) != 9:
        raise ValueError(f"model utility needs 9 numbers, got {len(values)}")
    if any(v <= 0 for v in values):
        return 0.0
    return float(hmean(list(values)))
