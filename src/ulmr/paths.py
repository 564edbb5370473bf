"""Where ulmr keeps caches (converted models, anchor answers): ``$ULMR_CACHE`` or ``~/.cache/ulmr``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root; override with the ``ULMR_CACHE`` environment variable."""
    root = os.environ.get("ULMR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ulmr")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """Files shipped inside the package (anchor questions, refusals, example sets)."""
    return Path(__file__).parent / "resources"


RECORDS_SUFFIX = ".records"


def records_dir_for(out: str | Path) -> Path:
    """Where a saved model directory's run records go: the sibling ``<out name>.records`` (the generated
    D_fr, the probes, the full run record, ``--verify`` reports), so the model directory itself holds
    nothing of the forget set and can be shared or pushed to the Hub as it is."""
    out = Path(out)
    return out.with_name(out.name + RECORDS_SUFFIX)


def find_run_file(out: str | Path, name: str) -> Path | None:
    """A run record file (``probe.jsonl``, ``ulmr_run.json``...) of the model directory ``out``: in
    ``<out>.records``, else in ``out`` itself (run directories saved before the records moved out), else None."""
    for path in (records_dir_for(out) / name, Path(out) / name):
        if path.is_file():
            return path
    return None
