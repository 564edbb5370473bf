"""The resumable generation cache: one JSONL line per finished attempt, keyed by config and slot.

A line records one attempt at one slot ``(source_index, kind, slot)`` in one ``round``: the text, and
whether it was accepted ("ok"), rejected (with a reason) or is a template "fallback". Lines carry a
hash of the generation config + prompts + backend (``cfg``) and of the item (``item``); lines that
do not match the current run are ignored, so a changed config never reuses stale generations.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..atomic import append_jsonl, read_jsonl_tolerant

SlotKey = tuple[int, str, int]  # (source_index, kind, slot)


def short_hash(*parts: object) -> str:
    """A stable 16-hex-digit hash of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Attempt:
    """One finished generation (or fallback) for a slot."""

    source_index: int
    kind: str
    slot: int
    round: int
    text: str
    status: str  # "ok" | "rejected" | "fallback"
    reason: str | None = None
    raw: str | None = None
    context: str = ""  # hash of the item (and, for negatives, of the instruction answered)

    @property
    def key(self) -> SlotKey:
        return (self.source_index, self.kind, self.slot)


class GenerationCache:
    """Attempts of the current config, read from and appended to ``path`` (None: memory only)."""

    def __init__(self, path: Path | None, cfg_hash: str):
        self.path = Path(path) if path is not None else None
        self.cfg_hash = cfg_hash
        self.attempts: dict[SlotKey, list[Attempt]] = {}
        self.loaded = 0
        if self.path is not None:
            for row in read_jsonl_tolerant(self.path):
                if row.get("cfg") != cfg_hash:
                    continue
                try:
                    a = Attempt(
                        int(row["source_index"]), str(row["kind"]), int(row["slot"]), int(row["round"]), str(row["text"]),
                        str(row["status"]), row.get("reason"), row.get("raw"), str(row.get("context", "")),
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                self._add(a)
                self.loaded += 1

    def _add(self, a: Attempt) -> None:
        rounds = self.attempts.setdefault(a.key, [])
        if all((b.round, b.context) != (a.round, a.context) for b in rounds):
            rounds.append(a)
            rounds.sort(key=lambda b: b.round)

    def get(self, key: SlotKey, context: str) -> list[Attempt]:
        """Attempts for ``key`` made in the same context (same item / same instruction)."""
        return [a for a in self.attempts.get(key, []) if a.context == context]

    def add(self, attempts: Iterable[Attempt]) -> None:
        """Record attempts and append them (one fsync for the batch)."""
        attempts = list(attempts)
        for a in attempts:
            self._add(a)
        if self.path is not None and attempts:
            append_jsonl(self.path, [{"cfg": self.cfg_hash, **a.__dict__} for a in attempts])
