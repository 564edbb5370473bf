"""Fluency as in RWKU (after ROME): weighted n-gram entropy of a generated text.

H(text) = mean over n in (2, 3) of w_n * H_n with w = (2/3, 4/3) and H_n = -Σ f log2 f over the relative
frequencies f of the text's word n-grams; the set score is the arithmetic mean over texts. Words are
``\\w+|[^\\w\\s]`` tokens (nltk.word_tokenize in the reference; close but not identical on contractions).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_WORD = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """Weighted mean of the n-gram entropies (bits) of one text; 0 for texts too short to have n-grams."""
    toks = _WORD.findall(text)
    vals = []
    for n, w in zip(ns, weights):
        grams = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
        total = sum(grams.values())
        h = -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0
        vals.append(w * h)
    return sum(vals) / len(vals)


def mean_ngram_entropy(texts: Sequence[str]) -> float:
    """Arithmetic mean of :func:`ngram_entropy` over texts."""
    return sum(map(ngram_entropy, texts)) / len(texts) if texts else 0.0
