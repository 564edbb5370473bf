"""Method registry: name -> method class. Adding a method is one file plus one line here."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method
from .dpo import DPO
from .ga import GradientAscent
from .graddiff import GradDiff
from .kl import KLMin
from .npo import NPO
from .retrain import Retrain
from .ulmr import ULMR
from .ulmr_paper import ULMRPaper

# The order is the order of the benchmark tables' rows and of the lists in help and error messages.
METHODS: dict[str, type[Method]] = {
    "ulmr": ULMR,
    "ulmr-paper": ULMRPaper,
    "ga": GradientAscent,
    "kl": KLMin,
    "dpo": DPO,
    "npo": NPO,
    "graddiff": GradDiff,
    "retrain": Retrain,
}


def method_class(name: str) -> type[Method]:
    """The class registered under ``name``; ConfigError naming the known methods otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'; known: {', '.join(METHODS)}") from None


def method_names(benchmark: str | None = None) -> list[str]:
    """Registered names in registry order; with ``benchmark``, those whose protocol list includes it."""
    return [n for n, c in METHODS.items() if benchmark is None or benchmark in c.benchmarks]


def display_name(name: str) -> str:
    """How tables name method ``name`` ("Gradient Ascent"); the name itself when the class sets none."""
    return method_class(name).display_name or name


def get_method(name: str, beta: float | None = None, retain_weight: float | None = None,
               answer_weight: float | None = None, retain_loss: str | None = None) -> Method:
    """An instance of method ``name`` with its defaults, overridden by the non-None arguments."""
    cls = method_class(name)
    kw: dict = {}
    if answer_weight is not None:
        if not cls.uses_original:
            known = ", ".join(n for n, c in METHODS.items() if c.uses_original)
            raise ConfigError(f"--answer-weight applies to {known} only, not method '{name}'")
        kw["answer_weight"] = answer_weight
    if retain_loss is not None and retain_loss != cls.retain_losses[0]:
        if retain_loss not in cls.retain_losses:
            known = ", ".join(n for n, c in METHODS.items() if retain_loss in c.retain_losses)
            raise ConfigError(f"--retain-loss {retain_loss} applies to {known} only, not method '{name}'")
        kw["retain_loss"] = retain_loss
    return cls(beta=beta, retain_weight=retain_weight, **kw)
