"""The ULMR generation stage: build the restructured forget set D_fr (paper steps 1-4).

For each forget item (x, y): ``num_rewrites`` rewrites of x through the rewrite prompt, one more
held-out rewrite for the probe file, then a negative response (refusal or counterfactual) for the
original and every rewrite through the negative prompt, which sees the instruction and y.

Generation runs in rounds: each round sends every still-missing slot in batches, filters the
replies (:mod:`ulmr.generate.filters`) and keeps the usable ones; after ``max_tries`` rounds the
remaining slots get a template fallback. Every finished attempt is appended to a JSONL cache, so a
rerun after an interruption generates only what is missing and ends with the same rows. Batch
composition and seeds depend only on the config and on earlier rounds, never on what was cached.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic import write_jsonl
from ..config import GenerateConfig
from ..data.records import QARecord
from ..errors import DataError
from ..progress import progress_bar
from .backends import Backend, BackendError, Turn
from .cache import Attempt, GenerationCache, SlotKey, short_hash
from .fallbacks import fallback_refusal, fallback_rewrite
from .filters import (
    check_negative,
    check_negative_paper,
    check_rewrite,
    check_rewrite_paper,
    clean_negative,
    clean_rewrite,
    key_span,
    normalise,
)
from .templates import PromptTemplate, load_prompt

log = logging.getLogger(__name__)

CACHE_VERSION = 1
RETRY_TEMPERATURE = 0.7  # rounds after the first sample at least this hot, else greedy retries repeat


@dataclass
class RestructureResult:
    """D_fr rows (items x (k+1)), held-out probes (one per item) and counts."""

    rows: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)

    def save(self, rows_path: str | Path, probes_path: str | Path | None = None) -> None:
        """Write rows (and probes) as JSONL, atomically."""
        write_jsonl(rows_path, self.rows)
        if probes_path is not None:
            write_jsonl(probes_path, self.probes)


@dataclass
class _Slot:
    key: SlotKey
    context: str
    conversation: list[Turn]
    check: Callable[[str, list[str]], str | None]  # (text, texts taken in the group) -> reason
    fallback: Callable[[list[str]], str]
    clean: Callable[[str], str]


def _seed(base: int, *parts: object) -> int:
    return int(short_hash(base, *parts)[:8], 16) % (2**31 - 1)


def _accepted(attempts: list[Attempt], before_round: int | None = None) -> Attempt | None:
    for a in attempts:
        if a.status in ("ok", "fallback") and (before_round is None or a.round < before_round):
            return a
    return None


class _Runner:
    """Runs one stage's rounds over its slots, with the cache and the progress bar."""

    def __init__(self, backend: Backend, cfg: GenerateConfig, cache: GenerationCache, bar):
        self.backend, self.cfg, self.cache, self.bar = backend, cfg, cache, bar
        self.generated = 0

    def _taken(self, group: list[_Slot], base: list[str], fresh: list[str]) -> list[str]:
        """Texts a new text of this item must differ from: the base (original), accepted texts, fresh ones."""
        accepted = [a.text for s in group if (a := _accepted(self.cache.get(s.key, s.context))) is not None]
        return base + accepted + fresh

    def run(self, stage: str, slots: list[_Slot], base_taken: dict[int, list[str]]) -> dict[SlotKey, Attempt]:
        cfg = self.cfg
        groups: dict[int, list[_Slot]] = {}
        for s in slots:
            groups.setdefault(s.key[0], []).append(s)
        for r in range(1, cfg.max_tries + 1):
            todo_round = [s for s in slots if _accepted(self.cache.get(s.key, s.context), before_round=r) is None]
            missing = {s.key for s in todo_round if all(a.round != r for a in self.cache.get(s.key, s.context))}
            if not missing:
                continue
            task = self.bar.add_task(f"{stage} round {r}/{cfg.max_tries}", total=len(missing))
            temperature = cfg.temperature if r == 1 else max(cfg.temperature, RETRY_TEMPERATURE)
            for c in range(0, len(todo_round), cfg.gen_batch_size):
                chunk = [s for s in todo_round[c : c + cfg.gen_batch_size] if s.key in missing]
                if not chunk:
                    continue
                seed = _seed(cfg.seed, stage, r, c // cfg.gen_batch_size)
                outs = self.backend.chat([s.conversation for s in chunk], cfg.max_new_tokens, temperature, seed, top_p=cfg.top_p)
                if len(outs) != len(chunk):
                    raise BackendError(f"backend {self.backend.name} returned {len(outs)} replies for {len(chunk)} prompts")
                self.generated += len(chunk)
                new: list[Attempt] = []
                fresh: dict[int, list[str]] = {}
                for s, raw in zip(chunk, outs):
                    text = s.clean(raw or "")
                    i = s.key[0]
                    reason = s.check(text, self._taken(groups[i], base_taken.get(i, []), fresh.get(i, [])))
                    if reason is None:
                        fresh.setdefault(s.key[0], []).append(text)
                    new.append(Attempt(*s.key, r, text, "ok" if reason is None else "rejected", reason,
                                       raw if raw != text else None, s.context))
                self.cache.add(new)
                self.bar.advance(task, len(chunk))
        # Slots still without a usable text get a template, decided in slot order.
        fallbacks: list[Attempt] = []
        for s in slots:
            if _accepted(self.cache.get(s.key, s.context)) is None:
                i = s.key[0]
                taken = self._taken(groups[i], base_taken.get(i, []), [a.text for a in fallbacks if a.source_index == i])
                fallbacks.append(Attempt(*s.key, cfg.max_tries + 1, s.fallback(taken), "fallback", None, None, s.context))
        self.cache.add(fallbacks)
        return {s.key: _accepted(self.cache.get(s.key, s.context)) for s in slots}  # type: ignore[misc]


def _item_hash(rec: QARecord) -> str:
    return short_hash(rec.question, rec.answer, rec.key)


def config_hash(cfg: GenerateConfig, rewrite: PromptTemplate, negative: PromptTemplate, backend: Backend) -> str:
    """Hash of everything that changes the generations: a different value means a fresh cache key."""
    # "full" filters leave the dump as it was before the field existed, so earlier caches keep their keys
    dump = cfg.model_dump(by_alias=True, exclude={"filters"} if cfg.filters == "full" else None)
    return short_hash(CACHE_VERSION, dump, rewrite.fingerprint(), negative.fingerprint(), backend.name)


def _rewrite_check(cfg: GenerateConfig, rec: QARecord, example_entities: Sequence[str]) -> Callable[[str, list[str]], str | None]:
    """The reason a rewrite of ``rec`` is unusable (or None), by the configured filters."""
    if cfg.filters == "paper":
        return lambda text, taken: check_rewrite_paper(text, rec.question, taken)
    return lambda text, taken: check_rewrite(text, rec.question, rec.answer, example_entities, taken, rec.key)


def _negative_check(cfg: GenerateConfig, rec: QARecord, example_entities: Sequence[str]) -> Callable[[str, list[str]], str | None]:
    """The reason a negative response for ``rec`` is unusable (or None): the configured filters, then duplicates."""

    def check(text: str, taken: list[str]) -> str | None:
        if cfg.filters == "paper":
            reason = check_negative_paper(text, rec.answer)
        else:
            reason = check_negative(text, rec.question, rec.answer, cfg.mode, rec.key, example_entities)
        if reason is None and any(normalise(text) == normalise(t) for t in taken):
            return "duplicate"
        return reason

    return check


def restructure(
    records: list[QARecord],
    backend: Backend,
    cfg: GenerateConfig | None = None,
    cache_path: str | Path | None = None,
) -> RestructureResult:
    """Build D_fr from forget records; resumable through the JSONL cache at ``cache_path``."""
    cfg = cfg or GenerateConfig()
    if not records:
        raise DataError("restructure: the forget set is empty")
    rewrite_prompt = load_prompt(cfg.rewrite_prompt, require=("question",))
    negative_prompt = load_prompt(cfg.negative_prompt or f"negative_{cfg.mode}", require=("question",))
    cache = GenerationCache(Path(cache_path) if cache_path else None, config_hash(cfg, rewrite_prompt, negative_prompt, backend))
    k = cfg.num_rewrites
    keys = [key_span(r.question, r.answer, r.key) for r in records]
    items = [_item_hash(r) for r in records]

    def rewrite_slot(i: int, rec: QARecord, kind: str, slot: int) -> _Slot:
        check = _rewrite_check(cfg, rec, rewrite_prompt.example_entities)
        return _Slot((i, kind, slot), items[i], rewrite_prompt.conversation(rec.question, rec.answer, rotate=slot), check,
                     lambda taken: fallback_rewrite(rec.question, slot, taken), clean_rewrite)

    rw_slots = []
    for i, rec in enumerate(records):
        rw_slots += [rewrite_slot(i, rec, "rewrite", j) for j in range(1, k + 1)]
        if cfg.probe_rewrites:
            rw_slots.append(rewrite_slot(i, rec, "probe", k + 1))

    with progress_bar() as bar:
        runner = _Runner(backend, cfg, cache, bar)
        rewrites = runner.run("rewrites", rw_slots, {i: [r.question] for i, r in enumerate(records)})

        def question_of(i: int, slot: int) -> str:
            return records[i].question if slot == 0 else rewrites[(i, "rewrite", slot)].text

        def negative_slot(i: int, rec: QARecord, slot: int) -> _Slot:
            q = question_of(i, slot)
            check = _negative_check(cfg, rec, negative_prompt.example_entities)
            return _Slot((i, "negative", slot), short_hash(items[i], q), negative_prompt.conversation(q, rec.answer, rotate=slot),
                         check, lambda taken: fallback_refusal(keys[i], cfg.seed, i, slot, taken), clean_negative)

        neg_slots = [negative_slot(i, rec, j) for i, rec in enumerate(records) for j in range(k + 1)]
        negatives = runner.run("negatives", neg_slots, {})

    rows: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        for j in range(k + 1):
            neg = negatives[(i, "negative", j)]
            rows.append({
                "question": question_of(i, j),
                "answer": neg.text,
                "source_index": i,
                "variant": "original" if j == 0 else "rewrite",
                "rewrite_id": j,
                "backend": backend.name,
                "prompt": negative_prompt.name,
                "rewrite_prompt": rewrite_prompt.name if j else None,
                "fallback": neg.status == "fallback",
                "question_fallback": j > 0 and rewrites[(i, "rewrite", j)].status == "fallback",
                "original_answer": rec.answer,
                # the spans the negative had to avoid; --answer-weight lowers exactly these tokens
                **({"key": keys[i]} if keys[i] else {}),
            })
        if cfg.probe_rewrites:
            probes.append({"question": rewrites[(i, "probe", k + 1)].text, "answer": rec.answer, "source_index": i, "variant": "probe"})
    stats = _stats(cache, rw_slots, neg_slots, rows, probes, runner.generated)
    log.info("generation: %d rows, %d probes, %d fallback rewrites, %d fallback negatives",
             len(rows), len(probes), stats["fallback_rewrites"], stats["fallback_negatives"])
    return RestructureResult(rows, probes, stats)


def _stats(cache: GenerationCache, rw_slots: list[_Slot], neg_slots: list[_Slot], rows: list, probes: list, generated: int) -> dict[str, Any]:
    rejected: dict[str, Counter] = {"rewrite": Counter(), "negative": Counter()}
    fb = {"rewrite": 0, "probe": 0, "negative": 0}  # probes share the rewrite prompt but are not D_fr rows
    attempts = 0
    for group, slots in (("rewrite", rw_slots), ("negative", neg_slots)):
        for s in slots:
            for a in cache.get(s.key, s.context):
                if a.status == "rejected":
                    rejected[group][a.reason or "unknown"] += 1
                if a.status == "fallback":
                    fb["probe" if s.key[1] == "probe" else group] += 1
                else:
                    attempts += 1
    return {
        "items": len({r["source_index"] for r in rows}),
        "rows": len(rows),
        "probes": len(probes),
        "attempts": attempts,
        "generated_this_run": generated,
        "rejected": {g: dict(sorted(c.items())) for g, c in rejected.items()},
        "fallback_rewrites": fb["rewrite"],
        "fallback_probes": fb["probe"],
        "fallback_negatives": fb["negative"],
    }
