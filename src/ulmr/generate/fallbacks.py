"""Template fallbacks for slots whose generations were all rejected: deterministic, leak-free."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Sequence

from .filters import leaked_terms, normalise
from .templates import PROMPT_DIR, render

REWRITE_TEMPLATES: tuple[str, ...] = (
    "Could you tell me: {question}",
    "I'd like to know: {question}",
    "Quick question: {question}",
    "Do you happen to know this? {question}",
    "Please answer the following. {question}",
    "Here is something I'm curious about: {question}",
    "Can you help me with this question? {question}",
    "I was wondering: {question}",
)


def _pick(seed: int, *parts: object) -> int:
    blob = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "big")


@lru_cache(maxsize=1)
def refusals() -> tuple[str, ...]:
    """The built-in refusal sentences (prompts/fallback_refusals.txt; '#' lines are comments)."""
    lines = (PROMPT_DIR / "fallback_refusals.txt").read_text(encoding="utf-8").splitlines()
    return tuple(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))


def fallback_rewrite(question: str, slot: int, taken: Sequence[str]) -> str:
    """A wrapper around the question ('Could you tell me: ...') that differs from ``taken``."""
    seen = {normalise(t) for t in taken}
    n = len(REWRITE_TEMPLATES)
    for j in range(n):
        text = render(REWRITE_TEMPLATES[(slot - 1 + j) % n], question)
        if normalise(text) not in seen:
            return text
    return render(REWRITE_TEMPLATES[0], question) + f" (variant {slot})"


def fallback_refusal(key_terms: Sequence[str], seed: int, source_index: int, slot: int, taken: Sequence[str] = ()) -> str:
    """A refusal from the built-in list, chosen by (seed, item, slot), that leaks no key term and
    differs from ``taken`` when possible."""
    pool = refusals()
    start = _pick(seed, source_index, slot) % len(pool)
    seen = {normalise(t) for t in taken}
    clean = [pool[(start + j) % len(pool)] for j in range(len(pool))]
    clean = [s for s in clean if not leaked_terms(s, key_terms)]
    for s in clean:
        if normalise(s) not in seen:
            return s
    return clean[0] if clean else "I'm sorry, I can't help with that."
