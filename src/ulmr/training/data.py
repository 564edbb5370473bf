"""Training rows and their collator: a forget part, a paired retain row, a preferred answer, the original
answer a D_fr row replaced, precomputed reference log-probs, each encoded once with :class:`~ulmr.data.chat.ChatFormat`."""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Mapping, Sequence

import torch

from ..data.chat import IGNORE, ChatFormat, Encoded, collate
from ..data.records import QARecord, parse_records
from ..errors import ConfigError
from ..generate.filters import key_span, term_spans
from ..methods.base import Method
from ..methods.refusals import preferred_answers
from .answer_text import original_key

log = logging.getLogger(__name__)

Row = dict[str, Any]


def equal_steps(n_rows: int, batch_size: int, grad_accum: int, epochs: float) -> int:
    """Optimizer steps of ``epochs`` passes over ``n_rows`` (at least one): the common budget that
    ``ulmr compare`` and the benches' equal-steps protocol impose on every method."""
    per_epoch = max(1, math.ceil(n_rows / (batch_size * grad_accum)))
    return max(1, math.ceil(per_epoch * epochs))


def as_records(items: Sequence[QARecord | Mapping], name: str) -> list[QARecord]:
    """QARecords from records or dicts with question/answer (and optional preferred)."""
    if all(isinstance(x, QARecord) for x in items):
        return list(items)  # type: ignore[arg-type]
    rows = [(i + 1, x.to_dict() if isinstance(x, QARecord) else dict(x)) for i, x in enumerate(items)]
    return parse_records(rows, name, is_file=False, dedupe=False)


def retain_pairing(n_rows: int, n_retain: int, seed: int) -> list[int]:
    """One retain index per row: shuffled passes over the retain set, so rows get distinct retain items
    while there are enough; deterministic in ``seed``."""
    rng = random.Random(seed)
    out: list[int] = []
    while len(out) < n_rows:
        perm = list(range(n_retain))
        rng.shuffle(perm)
        out += perm
    return out[:n_rows]


def build_rows(
    method: Method,
    fmt: ChatFormat,
    forget: Sequence[QARecord],
    retain: Sequence[QARecord] | None,
    seed: int,
    refusals: Sequence[str] = (),
) -> list[Row]:
    """Encoded rows for ``method``: one per forget item (per retain item for methods without forget)."""
    if method.retain == "required" and not retain:
        raise ConfigError(f"method '{method.name}' needs a retain set")
    if not method.uses_forget:
        return [{"retain": fmt.encode(r.question, r.answer)} for r in retain or []]
    if not forget:
        raise ConfigError(f"method '{method.name}' needs a non-empty forget set")
    rows: list[Row] = [{"forget": fmt.encode(r.question, r.answer)} for r in forget]
    if method.needs_preferred:
        prefs = preferred_answers([r.preferred for r in forget], refusals, seed)
        for row, r, p in zip(rows, forget, prefs):
            row["pref"] = fmt.encode(r.question, p)
    if method.uses_original and method.answer_weight:
        add_original_answers(rows, fmt, forget, method.name)
    if retain and method.retain != "never":
        encoded = {}
        for row, j in zip(rows, retain_pairing(len(rows), len(retain), seed)):
            if j not in encoded:
                encoded[j] = fmt.encode(retain[j].question, retain[j].answer)
            row["retain"] = encoded[j]
    elif retain:
        log.info("method '%s' does not use the retain set; ignored", method.name)
    return rows


def add_original_answers(rows: list[Row], fmt: ChatFormat, forget: Sequence[QARecord], method: str,
                         texts: Sequence[str] | None = None) -> None:
    """Part ``original`` of each row: the row's question with the answer it replaced (its
    ``original_answer`` column, written by the generation stage), or with ``texts[i]`` when given (the
    model's own wording, :mod:`~ulmr.training.answer_text`), labelled on the key span of the original
    answer (the row's ``key``, which the generation stage also writes, else derived). Data without the
    column trains without the term (logged); a column on some rows only is a ConfigError naming the
    first gap."""

    originals = [r.extra.get("original_answer") for r in forget]
    if all(a is None for a in originals):
        log.warning("%s: the forget data has no 'original_answer' column; the answer term (--answer-weight) is off", method)
        return
    for i, (row, r, a) in enumerate(zip(rows, forget, originals)):
        if not isinstance(a, str) or not a.strip():
            raise ConfigError(f"forget row {i + 1}: field 'original_answer' is missing or empty (other rows have it; "
                              "--answer-weight needs it on every row)")
        text = texts[i] if texts is not None else a
        row["original"] = key_span_labels(fmt.encode(r.question, text), fmt.tok, r.question, text, original_key(r))


def key_span_labels(enc: Encoded, tok, question: str, answer: str, key: Sequence[str] | None = None) -> Encoded:
    """``enc`` with labels only on the answer tokens that overlap the answer's key span (what it adds to
    the question, :func:`~ulmr.generate.filters.key_span`); the rest of the answer and the end-of-turn
    token become -100. An answer without a key span, or whose tokens do not line up (truncated), keeps
    its labels."""

    ranges = term_spans(answer, key_span(question, answer, key))
    if not ranges or not getattr(tok, "is_fast", False):  # character offsets need a fast tokenizer
        return enc
    tokens = tok(answer, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = tokens["input_ids"], tokens["offset_mapping"]
    start = enc.prompt_len
    if enc.input_ids[start : start + len(ids)] != ids:
        return enc
    labels = [IGNORE] * len(enc.labels)
    for i, (a, b) in enumerate(offsets):
        if any(a < e and s < b for s, e in ranges):
            labels[start + i] = enc.labels[start + i]
    return Encoded(enc.input_ids, labels, enc.prompt_len)


def retain_schedule(fmt: ChatFormat, n_rows: int, retain: Sequence[QARecord], epochs: int, seed: int) -> list[list[Encoded]]:
    """The retain row paired with each training row, for each epoch.

    One pairing over ``n_rows * epochs`` draws (shuffled passes over the retain set), cut into epochs, so
    later epochs see retain items earlier ones did not while the set has them. Its first epoch is the
    pairing :func:`build_rows` puts in the rows."""
    pairing = retain_pairing(n_rows * max(1, epochs), len(retain), seed)
    encoded: dict[int, Encoded] = {}
    for j in pairing:
        if j not in encoded:
            encoded[j] = fmt.encode(retain[j].question, retain[j].answer)
    return [[encoded[j] for j in pairing[e * n_rows : (e + 1) * n_rows]] for e in range(max(1, epochs))]


def match_retain_lengths(rows: list[Row], retain_by_epoch: list[list[Encoded]]) -> None:
    """Re-pair each epoch's retain rows so that longer forget rows get longer retain rows (in place).

    Every epoch keeps the same retain items; only which row carries which changes. With batches
    grouped by forget length this groups the retain part too, which random pairing would pad as much
    as ever."""
    by_forget = sorted(range(len(rows)), key=lambda i: len(rows[i]["forget"].input_ids))
    for e, paired in enumerate(retain_by_epoch):
        by_length = sorted(paired, key=lambda x: len(x.input_ids))
        matched: list[Encoded] = [by_length[0]] * len(rows)
        for rank, i in enumerate(by_forget):
            matched[i] = by_length[rank]
        retain_by_epoch[e] = matched
    for row, r in zip(rows, retain_by_epoch[0]):
        row["retain"] = r


class RowDataset(torch.utils.data.Dataset):
    """A list of rows; ``rows[i]`` may gain ``<part>_ref_logp`` floats before training.

    With a ``retain_by_epoch`` schedule (see :func:`retain_schedule`), row ``i`` carries the retain row
    of the current ``epoch`` (set by :class:`~ulmr.training.trainer.RetainEpochCallback`)."""

    def __init__(self, rows: list[Row], retain_by_epoch: list[list[Encoded]] | None = None):
        self.rows = rows
        self.retain_by_epoch = retain_by_epoch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        """Tokens of each row's main part (``forget``, else ``retain``): the key of length grouping.

        The forget part is the one every forget method trains on and the one that stays with the row;
        the paired retain row changes each epoch (:func:`match_retain_lengths` makes it follow)."""
        part = "forget" if self.rows and "forget" in self.rows[0] else "retain"
        return [len(r[part].input_ids) for r in self.rows]

    def __getitem__(self, i: int) -> Row:
        row = self.rows[i]
        if self.retain_by_epoch and self.epoch and "retain" in row:
            row = {**row, "retain": self.retain_by_epoch[self.epoch % len(self.retain_by_epoch)][i]}
        return row


class PartCollator:
    """Right-pads each part with :func:`chat.collate` into ``<part>_input_ids/attention_mask/labels``;
    floats (precomputed reference log-probs) become a float32 tensor."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[Row]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key, value in rows[0].items():
            if isinstance(value, Encoded):
                for name, t in collate([r[key] for r in rows], self.pad_id).items():
                    batch[f"{key}_{name}"] = t
            else:
                batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.float32)
        return batch
