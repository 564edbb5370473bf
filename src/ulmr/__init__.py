"""ulmr: make a language model forget chosen knowledge (ULMR and baselines, TOFU/RWKU evaluation)."""

from typing import Any

from .version import __version__

__all__ = ["unlearn", "evaluate", "__version__"]


def __getattr__(name: str) -> Any:
    """Load `unlearn`/`evaluate` on first use (PEP 562): importing a submodule must not pull in `ulmr.api`."""
    if name in ("unlearn", "evaluate"):
        from . import api  # lazy: api imports the whole pipeline (torch, transformers)

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
