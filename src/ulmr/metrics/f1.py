"""TriviaQA-style token F1: SQuAD normalisation (lower-case, drop punctuation and articles a/an/the, collapse
whitespace), F1 of the bag of tokens, maximised over the gold aliases."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD/TriviaQA normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    """2PR/(P+R) over normalised tokens (with multiplicity)."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    """max over aliases of :func:`token_f1`."""
    return max((token_f1(prediction, g) for g in golds), default=0.0)
