"""The built-in retain anchor: general questions answered by the base model itself.

Users rarely hold a retain set. Without one, SFT on refusals teaches the model to refuse everything
(measured: 92% of TOFU retain questions refused after 2 epochs). Mixing in the base model's own greedy
answers to unrelated questions keeps its behaviour elsewhere. The answers are generated once per model
and cached under ``$ULMR_CACHE/anchors``.

The questions interleave questions about books and people ("Who wrote ...?", "Who is ...?") with
general ones, so that any prefix of the list (one anchor row is drawn per training row) anchors the
question *forms* a forget set uses. Measured on the demo set: with general questions only, refusals
spread to every "Who wrote ...?" question (neighbour over-refusal 62% at lr 2e-4, alpha 0.5).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Iterable, Sequence

from .data.records import QARecord
from .generate.filters import capitalised_runs
from .inference import cached_answers
from .paths import cache_dir, resources_dir

log = logging.getLogger(__name__)

ANCHOR_FILE = "anchor_questions.txt"


def anchor_questions() -> list[str]:
    """The built-in general questions (one per line in resources/anchor_questions.txt)."""
    text = (resources_dir() / ANCHOR_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def model_fingerprint(model_dir: str | Path) -> str:
    """A short key for a model directory: its config plus weight file names, sizes and mtimes."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.json")) + sorted(model_dir.glob("*.safetensors")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _trim_to_sentence(text: str) -> str:
    """Cut a length-limited generation back to its last complete sentence, so the anchor does not
    teach the model to stop mid-sentence."""
    m = list(re.finditer(r"[.!?](\s|$)", text))
    return text[: m[-1].end()].strip() if m else text.strip()


def anchor_set(model, tokenizer, model_dir: str | Path, n: int | None = None, max_new_tokens: int = 64,
               batch_size: int = 32) -> list[QARecord]:
    """Base-model answers to the first ``n`` built-in questions (all by default).

    Answers are cached per question and per model, so a later run that needs more questions generates
    only the missing ones.
    """
    questions = anchor_questions()[: n or None]
    path = cache_dir() / "anchors" / f"{model_fingerprint(model_dir)}-t{max_new_tokens}.jsonl"
    answers, generated = cached_answers(model, tokenizer, questions, path, max_new_tokens=max_new_tokens,
                                        batch_size=batch_size, description="anchor answers", post=_trim_to_sentence)
    if generated:
        log.info("retain anchor: generated the base model's answers to %d built-in questions (cache %s)", generated, path)
    else:
        log.info("retain anchor: %d built-in questions with the base model's cached answers (%s)", len(questions), path)
    return [QARecord(q, a) for q, a in zip(questions, answers) if a]


def entity_words(text: str) -> set[str]:
    """Lower-cased words (3+ letters) of the capitalised runs of ``text``: the names it mentions."""
    return {w.lower() for run in capitalised_runs(text) for w in run.split() if len(w) > 2}


def without_shared_entities(records: Sequence[QARecord], texts: Iterable[str]) -> list[QARecord]:
    """``records`` minus those whose question names something ``texts`` name (a shared word of their capitalised
    runs): an anchor must neither keep what is being forgotten nor train on the questions of an evaluation."""
    taken = {w for t in texts for w in entity_words(t)}
    kept = [r for r in records if not (entity_words(r.question) & taken)]
    if len(kept) < len(records):
        log.info("retain anchor: %d of %d questions dropped for naming what the forget or evaluation sets name",
                 len(records) - len(kept), len(records))
    return kept
