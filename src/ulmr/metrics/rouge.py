"""ROUGE-L recall, in the two flavours the benchmarks use.

- TOFU: ``rouge_score`` RougeScorer(['rougeL'], use_stemmer=True).score(target=gold, prediction=gen).recall,
  in [0, 1].
- RWKU: the PyPI ``rouge`` package (1.0.1), ``Rouge().get_scores(pred, ref, avg=True)['rouge-l']['r']`` x 100,
  no stemming, case-sensitive; an empty prediction is replaced by "NOANSWER" first (as RWKU's code does).
"""

from __future__ import annotations

from functools import lru_cache

NOANSWER = "NOANSWER"


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@lru_cache(maxsize=1)
def _rouge():
    from rouge import Rouge

    return Rouge(metrics=["rouge-l"])


def rougeL_recall(gold: str, generated: str) -> float:
    """TOFU's ROUGE-L recall: LCS(gold, gen) / len(gold) over stemmed, lower-cased tokens; in [0, 1]."""
    return float(_scorer().score(gold, generated)["rougeL"].recall)


def rwku_rouge_recall(gold: str, prediction: str) -> float:
    """RWKU's ROUGE-L recall x 100 (PyPI ``rouge``: whitespace tokens, case-sensitive, no stemming).

    An empty prediction becomes "NOANSWER". ``rouge`` splits texts into sentences at '.' and raises on a
    text with no sentence left (e.g. "..."); such a pair scores 0.
    """
    prediction = prediction.strip() or NOANSWER
    try:
        return 100.0 * float(_rouge().get_scores(prediction, gold, avg=True)["rouge-l"]["r"])
    except (ValueError, ZeroDivisionError):
        return 0.0
