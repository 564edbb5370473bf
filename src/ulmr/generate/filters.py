"""Filters for generated rewrites and negative responses, and the key-span definition they use.

Key span
--------
The key span of an answer is what the answer adds to its question. It is the list of these terms
of the answer that the question does not contain:

* capitalised word runs ("Mara Velquist", "Silent Harbor"; lower-case connectors such as "of", "de",
  "da", "al" may join two capitalised words; leading/trailing stop words and a possessive 's are
  dropped; a run counts as contained in the question when all its content words are);
* numbers (``1987``, ``08/09/1956``, ``8th``, ``3.5``) and dates (``8th of September, 1956``,
  ``September 8, 1956``);
* every other content word: a word that is not in :data:`STOP_WORDS` below.

"Contained in the question" compares lower-cased words with a possessive 's removed and a plural
"s" ignored. So the subject the question names (e.g. the author) is never part of the key span and
may appear in a refusal. A negative response leaks when it contains any key-span term,
case-insensitive, as a whole word. When the record has a ``key`` (QARecord.key), that list replaces
the computed terms. Counterfactual answers face the same check: the wrong answer must not contain
the true key span. A refusal must also read as one (apology or negation: :func:`ulmr.refusal.declines`) and
add no number the question lacks (``new_number``); degenerate repetition is rejected (``repetitive``).

Rewrites
--------
A rewrite is rejected when it is empty, equal to the original (or to another rewrite of the item)
after normalising case/punctuation/space, not phrased as a question or request (reason ``answers``
when it also shares a key-span term with the answer, else ``not_a_question``), a question that
contains a capitalised/numeric key-span term (or any ``key`` term) of the answer (``leaks_answer``),
much longer than the
original, missing a named entity or number of the question (``lost_entity``), adding a number
the question does not have (``new_number``), degenerately repetitive (``repetitive``), or carrying an
entity of the prompt's few-shot examples that the question lacks (``example_entity``) or any other
capitalised name the question lacks (``new_entity``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from ..refusal import declines

# Function words, question/imperative words that start instructions, and the vocabulary of
# refusals: a refusal's own wording ("I'm sorry, I don't have that information") must never count
# as a leak just because the answer used the same generic word.
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each either else ever every few for from further had hadn't has hasn't have
    haven't having he he'd he'll he's her here here's hers herself him himself his how how's however
    i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most much must
    mustn't my myself neither no nor not now of off on once only or other ought our ours ourselves
    out over own same shall shan't she she'd she'll she's should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll they're
    they've this those though through thus to too under until up upon us very via was wasn't we we'd
    we'll we're we've were weren't what what's when when's where where's whether which while who
    who's whom whose why why's will with within without won't would wouldn't yet you you'd you'll
    you're you've your yours yourself yourselves
    tell describe name list explain give share identify provide state mention please know kindly
    sorry afraid unfortunately apologies apologize unable able sure certain aware information info
    details detail reliable answer answers question questions help assist confirm recall
    """.split()
)

QUESTION_STARTS: frozenset[str] = frozenset(
    """
    what who whom whose which when where why how is are was were do does did can could would will
    should shall has have had may might tell describe name list explain give share identify provide
    state mention please i'd in on at for from to of by with under during among between
    """.split()
)

_CONNECTORS = frozenset("of the de da del della di du van von der den al el la le bin ibn y".split())
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER = r"\d+(?:[.,/:\-]\d+)*(?:st|nd|rd|th|s)?"
_WORD = r"[^\W\d_][^\W_]*(?:['\-][^\W_]+)*"
_TOKEN = re.compile(rf"(?P<num>{_NUMBER})|(?P<word>{_WORD})")
_DATE = re.compile(
    rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+(?:{_MONTHS}),?\s+\d{{4}}"
    rf"|(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}})\b"
)
_POSSESSIVE = re.compile(r"'s$|'$", re.I)


def _norm_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')


def _strip_possessive(word: str) -> str:
    return _POSSESSIVE.sub("", word) if len(word) > 3 else word


def _base(word: str) -> str:
    """Lower-case form used to compare words across texts: possessive and plural 's' removed."""
    w = _strip_possessive(word.lower())
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w


def _canon_number(tok: str) -> str:
    """'08/09/1956' and '8/9/1956' compare equal."""
    return re.sub(r"(?<!\d)0+(?=\d)", "", tok)


def _tokens(text: str) -> list[tuple[str, int, int, bool]]:
    """(token, start, end, is_number) for every word or number in ``text``."""
    return [(m.group(0), m.start(), m.end(), m.group("num") is not None) for m in _TOKEN.finditer(text)]


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t\"'([":
        i -= 1
    return i < 0 or text[i] in ".!?:\n"


def is_content(word: str) -> bool:
    """A word that is not a stop word (numbers are content too)."""
    return _strip_possessive(word.lower()) not in STOP_WORDS and word.lower() not in STOP_WORDS


def word_bases(text: str) -> set[str]:
    """Comparable forms of every word and number in ``text`` (numbers also split at separators)."""
    out: set[str] = set()
    for tok, _, _, is_num in _tokens(_norm_quotes(text)):
        out.add(_base(tok))
        if is_num:
            out.update(p for p in re.split(r"[.,/:\-]", tok) if p)
            out.add(re.sub(r"(st|nd|rd|th|s)$", "", tok))
            out.add(_canon_number(tok))
    return out


def capitalised_runs(text: str) -> list[str]:
    """Runs of capitalised words, e.g. 'Basil Mahfouz Al-Kuwaiti', 'Kuwait City', 'Bank of England'.

    A sentence-initial word starts a run only when it is not a stop word and either another
    capitalised word follows it or it is capitalised elsewhere mid-sentence."""
    text = _norm_quotes(text)
    toks = [t for t in _tokens(text) if not t[3]]
    mid_caps = {t[0] for t in toks if t[0][:1].isupper() and not _sentence_initial(text, t[1])}
    runs: list[list[tuple[str, int, int, bool]]] = []
    cur: list[tuple[str, int, int, bool]] = []
    for i, t in enumerate(toks):
        word, start = t[0], t[1]
        gap_ok = bool(cur) and text[cur[-1][2] : start].strip() == ""
        is_cap = word[:1].isupper()
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        joins_next = nxt is not None and nxt[0][:1].isupper() and text[t[2] : nxt[1]].strip() == ""
        if is_cap and _sentence_initial(text, start):
            keep = is_content(word) and (joins_next or word in mid_caps)
            if cur:
                runs.append(cur)
            cur = [t] if keep else []
        elif is_cap:
            if cur and not gap_ok:
                runs.append(cur)
                cur = []
            cur.append(t)
        elif word.lower() in _CONNECTORS and cur and gap_ok and joins_next:
            cur.append(t)
        else:
            if cur:
                runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    out: list[str] = []
    for run in runs:
        while run and not is_content(run[0][0]):
            run = run[1:]
        while run and (not is_content(run[-1][0]) or run[-1][0].lower() in _CONNECTORS):
            run = run[:-1]
        if run:
            phrase = _strip_possessive(text[run[0][1] : run[-1][2]])
            if phrase not in out:
                out.append(phrase)
    return out


def numbers(text: str) -> list[str]:
    """Numbers as written (``1987``, ``08/09/1956``, ``8th``)."""
    return list(dict.fromkeys(t[0] for t in _tokens(_norm_quotes(text)) if t[3]))


def dates(text: str) -> list[str]:
    """Dates such as '8th of September, 1956', 'September 8, 1956' or '08/09/1956'."""
    return list(dict.fromkeys(m.group(0) for m in _DATE.finditer(_norm_quotes(text))))


def _in_question(term: str, q_bases: set[str]) -> bool:
    parts = [p for p, _, _, _ in _tokens(term) if is_content(p)]
    return bool(parts) and all(_base(p) in q_bases for p in parts)


def key_span(question: str, answer: str, key: Sequence[str] | None = None) -> list[str]:
    """The answer's key-span terms (see the module docstring); ``key`` replaces them when given."""
    if key:
        return [k.strip() for k in key if k and k.strip()]
    q_bases = word_bases(question)
    terms: list[str] = []
    candidates = dates(answer) + capitalised_runs(answer) + numbers(answer)
    candidates += [_strip_possessive(t[0]) for t in _tokens(_norm_quotes(answer)) if not t[3] and is_content(t[0])]
    for term in candidates:
        if not _in_question(term, q_bases) and term.lower() not in {t.lower() for t in terms}:
            terms.append(term)
    return terms


def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![^\W_])" + re.escape(_norm_quotes(term)) + r"(?![^\W_])", re.I)


def leaked_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The terms that occur in ``text`` (case-insensitive, whole word)."""
    text = _norm_quotes(text)
    return [t for t in terms if t and _term_pattern(t).search(text)]


def term_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """Character ranges of every whole-word, case-insensitive occurrence of ``terms`` in ``text``."""
    text = _norm_quotes(text)  # one character for one: ranges stay valid for the original text
    return [(m.start(), m.end()) for t in terms if t for m in _term_pattern(t).finditer(text)]


def entities(text: str) -> list[str]:
    """Named entities of a text for the rewrite checks: capitalised runs and numbers."""
    return capitalised_runs(text) + numbers(text)


def normalise(text: str) -> str:
    """Lower case, punctuation removed, spaces collapsed: for 'same text' comparisons."""
    return " ".join(t[0].lower() for t in _tokens(_norm_quotes(text)))


def is_question_form(text: str) -> bool:
    """Ends in/contains a question mark, or starts with a question or request word."""
    toks = _tokens(_norm_quotes(text))
    return "?" in text or bool(toks and toks[0][0].lower() in QUESTION_STARTS)


# ---------------------------------------------------------------- cleaning
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:here(?:'s| is) (?:a |the |my )?(?:rewritten|rephrased|new|different) (?:version|question|wording)[^:]*:"
    r"|(?:rewritten|rephrased|new|paraphrased)?\s*(?:question|rewrite|paraphrase|version|answer|reply|response)\s*(?:\d+)?\s*:)(?:\*\*)?\s*",
    re.I,
)


def clean_rewrite(text: str) -> str:
    """First non-empty line, without labels such as 'Rewritten question:' and surrounding quotes."""
    for line in text.strip().splitlines():
        line = _LABEL.sub("", line.strip()).strip().strip('"').strip("'").strip()
        if line:
            return line
    return ""


def clean_negative(text: str) -> str:
    """First paragraph, without an 'Answer:'-style label, spaces collapsed."""
    para = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    para = _LABEL.sub("", para.strip())
    return " ".join(para.split()).strip('"').strip()


# ---------------------------------------------------------------- filters
_GLUE = frozenset("the a an of to in and or for on at by with is was it that i".split())


def repetitive(text: str, reference: str = "") -> bool:
    """Degenerate repetition: a word used 3+ times, or a capitalised content word used more often
    than in ``reference`` (e.g. a name doubled: 'Who in Ana Rupe grew up in Ana Rupe?')."""
    ref = Counter(_base(t[0]) for t in _tokens(_norm_quotes(reference)))
    counts = Counter(_base(t[0]) for t in _tokens(_norm_quotes(text)) if not t[3])
    caps = {_base(t[0]) for t in _tokens(_norm_quotes(text)) if t[0][:1].isupper() and is_content(t[0])}
    return any(n >= 3 and n > ref[w] and w not in _GLUE or (w in caps and n > max(1, ref[w])) for w, n in counts.items())


def _example_entity_hits(text: str, reference: str, example_entities: Iterable[str]) -> list[str]:
    """Example entities found in ``text`` but not in ``reference``: a capitalised content word of an
    example entity, written capitalised, or a number of the examples."""
    words = {t[0] for t in _tokens(_norm_quotes(text))}
    bases = {_base(w) for w in words}
    ref = word_bases(reference)
    hits = []
    for ent in example_entities:
        for part, _, _, is_num in _tokens(_norm_quotes(ent)):
            if is_num:
                if part in words and part not in ref:
                    hits.append(ent)
                    break
            elif part[:1].isupper() and is_content(part) and _base(part) not in ref:
                if _strip_possessive(part) in {_strip_possessive(w) for w in words} or (
                    _base(part) in bases and any(w[:1].isupper() and _base(w) == _base(part) for w in words)
                ):
                    hits.append(ent)
                    break
    return hits


def lost_entities(rewrite: str, question: str) -> list[str]:
    """Entities of the question whose content words do not all appear in the rewrite."""
    have = word_bases(rewrite)
    lost = []
    for ent in entities(question):
        parts = [p for p, _, _, _ in _tokens(_norm_quotes(ent)) if is_content(p)]
        if not all(_base(p) in have or _canon_number(p) in have for p in parts):
            lost.append(ent)
    return lost


def check_rewrite_paper(rewrite: str, question: str, taken: Sequence[str] = ()) -> str | None:
    """The paper recipe's only rewrite checks: a rewrite exists and differs from the original and the others."""
    if not rewrite.strip():
        return "empty"
    norm = normalise(rewrite)
    if norm == normalise(question):
        return "identical"
    return "duplicate" if any(norm == normalise(t) for t in taken) else None


def check_rewrite(
    rewrite: str,
    question: str,
    answer: str,
    example_entities: Sequence[str] = (),
    taken: Sequence[str] = (),
    key: Sequence[str] | None = None,
) -> str | None:
    """The reason ``rewrite`` is unusable, or None. ``taken``: the original and accepted rewrites."""
    basic = check_rewrite_paper(rewrite, question, taken)
    if basic:
        return basic
    norm = normalise(rewrite)
    terms = key_span(question, answer, key)
    if not is_question_form(rewrite):
        return "answers" if leaked_terms(rewrite, terms) else "not_a_question"
    # A question may add generic words of the answer ("male or female?"), never its names/numbers.
    if leaked_terms(rewrite, [t for t in terms if t[:1].isupper() or any(c.isdigit() for c in t)] if not key else terms):
        return "leaks_answer"
    if len(norm.split()) > 2 * len(normalise(question).split()) + 12:
        return "too_long"
    if repetitive(rewrite, question):
        return "repetitive"
    if lost_entities(rewrite, question):
        return "lost_entity"
    q_bases = word_bases(question)
    if any(_canon_number(n) not in q_bases and n not in q_bases for n in numbers(rewrite)):
        return "new_number"
    if _example_entity_hits(rewrite, question, example_entities):
        return "example_entity"
    if any(not _in_question(run, q_bases) for run in capitalised_runs(rewrite)):
        return "new_entity"  # a paraphrase adds no names (invented titles, places)
    return None


def check_negative_paper(response: str, answer: str) -> str | None:
    """The paper recipe's only negative-response checks: a response exists and is not the original answer."""
    if not response.strip():
        return "empty"
    return "identical" if normalise(response) == normalise(answer) else None


def check_negative(
    response: str,
    question: str,
    answer: str,
    mode: str = "refusal",
    key: Sequence[str] | None = None,
    example_entities: Sequence[str] = (),
) -> str | None:
    """The reason a negative response is unusable, or None. Leak = contains a key-span term."""
    if not response.strip():
        return "empty"
    if leaked_terms(response, key_span(question, answer, key)):
        return "leak"
    if normalise(response) == normalise(answer):
        return "identical"
    if repetitive(response, question):
        return "repetitive"
    if mode == "refusal" and not declines(response):
        return "not_refusal"
    q_bases = word_bases(question)
    if mode == "refusal" and any(_canon_number(n) not in q_bases and n not in q_bases for n in numbers(response)):
        return "new_number"  # a refusal that slips in a (wrong) number is not a clean refusal
    if _example_entity_hits(response, question + " " + answer, example_entities):
        return "example_entity"
    return None
