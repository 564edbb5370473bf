"""Which Trainer checkpoints a resume may use.

The Trainer writes ``trainer_state.json`` last and not atomically: a checkpoint whose state file is missing
or does not parse was cut off mid-save by a kill, and resuming from it fails or silently restarts.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger("ulmr.train")


def is_complete(ckpt: Path) -> bool:
    """Whether ``ckpt`` finished saving (its ``trainer_state.json`` parses)."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _numbered(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return sorted(found, reverse=True)


def last_complete_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest-step checkpoint in ``ckpt_dir`` that finished saving, or None."""
    for _, ckpt in _numbered(Path(ckpt_dir)):
        if is_complete(ckpt):
            return ckpt
        log.warning("skipping incomplete checkpoint %s (interrupted while saving)", ckpt)
    return None


def drop_incomplete_checkpoints(ckpt_dir: Path) -> None:
    """Remove checkpoints a kill left half-written (call on one process only)."""
    for _, ckpt in _numbered(Path(ckpt_dir)):
        if not is_complete(ckpt):
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
