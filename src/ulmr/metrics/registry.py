"""Metrics by name: adding a metric is one function in its family module plus one line here."""

from __future__ import annotations

from typing import Callable

from .. import refusal
from . import f1, fluency, mcq, mia, probability, rouge, truth_ratio

METRICS: dict[str, Callable] = {
    "rougeL_recall": rouge.rougeL_recall,
    "rwku_rouge_recall": rouge.rwku_rouge_recall,
    "prob": probability.prob_from_nll,
    "option_prob": probability.option_probability,
    "truth_ratio": truth_ratio.truth_ratio,
    "truth_ratio_forget": truth_ratio.forget_truth_ratio,
    "truth_ratio_retain": truth_ratio.retain_truth_ratio,
    "forget_quality": truth_ratio.forget_quality,
    "model_utility": truth_ratio.model_utility,
    "mia": mia.mia_statistic,
    "refusal_rate": refusal.refusal_rate,
    "is_refusal": refusal.is_refusal,
    "mcq_accuracy": mcq.accuracy,
    "ngram_entropy": fluency.mean_ngram_entropy,
    "token_f1": f1.best_f1,
}


def get(name: str) -> Callable:
    """The metric function registered as ``name``."""
    from ..errors import ConfigError

    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})") from None
