"""Refusal sentences for DPO's preferred answer: a built-in list of ~100, or one sentence per line of a
user file; one refusal is drawn per item with a fixed seed, unless the item has its own ``preferred``."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError


def load_refusals(path: str | Path | None = None) -> list[str]:
    """Non-empty, stripped lines of ``path`` (default: the built-in ``resources/refusals.txt``)."""
    if path is None:
        text = resources.files("ulmr").joinpath("resources/refusals.txt").read_text(encoding="utf-8")
        source = "built-in refusals"
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"refusals file {p}: no such file")
        text = p.read_text(encoding="utf-8")
        source = str(p)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{source}: no refusal sentences (one per line expected)")
    return lines


def preferred_answers(preferred: Sequence[str | None], refusals: Sequence[str], seed: int) -> list[str]:
    """Each item's own preferred answer, or a refusal drawn for it (deterministic in ``seed``)."""
    rng = random.Random(seed)
    drawn = [rng.choice(refusals) for _ in preferred]  # drawn for every item so choices don't shift
    return [p if p is not None else d for p, d in zip(preferred, drawn)]
