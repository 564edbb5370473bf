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
