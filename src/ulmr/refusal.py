"""The two refusal detectors, each tuned for its own job; they differ on purpose (merging them would change
which negatives D_fr admits, or the over-refusal rates reported).

:func:`declines` admits a generated negative response into D_fr (refusal mode). It is deliberately broad:
any apology, negation or "unknown" marker (``sorry``, ``unable``, ``don't``, ``no information``, ``not aware``,
``decline``, ``rather not`` ...), case-insensitive, curly apostrophes folded. The leak and number checks of
:func:`ulmr.generate.filters.check_negative` do the narrowing.

:func:`is_refusal` / :func:`refusal_rate` count over-refusal in evaluation: a text is a refusal when, after
lower-casing and folding curly apostrophes, any of these phrases occurs anywhere in it:

- "i don't know" / "i do not know" / "i'm not sure" / "i am not sure" / "not certain"
- "i cannot" / "i can't" / "i can not" / "i won't" / "unable to" / "not able to"
- "i'm sorry" / "i am sorry" / "i apologize" / "sorry, but"
- "no information" / "no (reliable|specific|available|public) information" / "don't have (any )?information"
- "not aware of" / "no knowledge" / "no record" / "i have no idea" / "not familiar with"
- "as an ai" / "beyond my knowledge" / "outside (of )?my knowledge" / "i'm afraid"
- "not (something|a topic) i can" / "i'd rather not" / "can't (help|assist|provide|share|answer)"
- TOFU's idontknow phrasing: "that's a mystery to me", "remains unknown", "not within my reach", "elude"s me,
  "i lack", "beyond my (scope|reach|understanding)", "i'm in the dark", "not in my (database|knowledge)"

It is a phrase matcher, so it over-counts answers that mention e.g. "unable to" in passing; it is meant for
comparing models on the same set, not as an absolute rate.
"""

from __future__ import annotations

import re
from typing import Sequence

_DECLINE_MARKERS = re.compile(
    r"\b(?:sorry|afraid|apolog\w*|unfortunately|unable|cannot|can't|can not|couldn't|don't|do not|doesn't|"
    r"won't|not able|not sure|no (?:reliable |verified |specific )?(?:information|details|record|data|knowledge)|"
    r"(?:not|isn't) (?:aware|certain|familiar|something)|unknown|decline|rather not|prefer not|not in a position)\b",
    re.I,
)

REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bi (?:don't|do not) know\b",
    r"\bi(?:'m| am) not (?:sure|certain|aware)\b",
    r"\bnot certain\b",
    r"\bi (?:cannot|can't|can not|won't|will not)\b",
    r"\bcan't (?:help|assist|provide|share|answer|say)\b",
    r"\bunable to\b",
    r"\bnot able to\b",
    r"\bi(?:'m| am) sorry\b",
    r"\bi apologi[sz]e\b",
    r"\bsorry, but\b",
    r"\bno (?:reliable |specific |available |public |relevant )?information\b",
    r"\b(?:don't|do not) have (?:any )?(?:information|details|data|knowledge)\b",
    r"\bnot aware of\b",
    r"\bno knowledge\b",
    r"\bno record\b",
    r"\bi have no idea\b",
    r"\bnot familiar with\b",
    r"\bas an ai\b",
    r"\b(?:beyond|outside(?: of)?) my (?:knowledge|scope|reach|understanding|expertise)\b",
    r"\bi(?:'m| am) afraid\b",
    r"\bnot (?:something|a topic) i can\b",
    r"\bi'd rather not\b",
    r"\ba mystery to me\b",
    r"\bremains? unknown\b",
    r"\bnot within my\b",
    r"\belude[sd]? me\b",
    r"\bi lack\b",
    r"\bi(?:'m| am) in the dark\b",
    r"\bnot in my (?:database|knowledge|records)\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS))


def _fold_apostrophes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def declines(text: str) -> bool:
    """True when ``text`` declines (apology, negation of knowing/sharing): admission of a negative into D_fr.
    Deliberately broad; see the module docstring."""
    return bool(_DECLINE_MARKERS.search(_fold_apostrophes(text)))


def is_refusal(text: str) -> bool:
    """True when ``text`` matches one of :data:`REFUSAL_PATTERNS` (case-insensitive, curly apostrophes folded)."""
    return bool(_REFUSAL.search(_fold_apostrophes(text).lower()))


def refusal_rate(answers: Sequence[str]) -> float:
    """Share of answers that :func:`is_refusal` flags; 0 for an empty list."""
    return sum(map(is_refusal, answers)) / len(answers) if answers else 0.0
