"""ulmr: make a language model forget chosen knowledge (ULMR and baselines, TOFU/RWKU evaluation)."""

__version__ = "0.1.0"

from .api import evaluate, unlearn  # noqa: E402

__all__ = ["unlearn", "evaluate", "__version__"]
