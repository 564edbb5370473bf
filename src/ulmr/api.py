"""The Python API: the same entry points as the CLI, as plain functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError, validation_message


def unlearn(model: str = "smollm2-135m", forget: str | Path = "", out: str | Path = "", **options: Any):
    """Unlearn ``forget`` from ``model`` and save the result to ``out``; options as in ``ulmr unlearn``.

    >>> ulmr.unlearn("smollm2-135m", "forget.jsonl", "out/u1", alpha=0.5, epochs=3)
    """
    from pydantic import ValidationError

    from .config import UnlearnConfig  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from .pipeline import unlearn as run  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    try:
        cfg = UnlearnConfig(model=model, forget=str(forget), out=Path(out), **options)
    except ValidationError as e:
        raise ConfigError(validation_message(e)) from e
    return run(cfg)


def evaluate(model: str, forget: str | Path, retain: list[str | Path] | None = None, **options: Any) -> dict:
    """ROUGE-L recall, probability (and truth ratio / over-refusal where applicable) on QA files."""
    from .data.records import load_qa  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from .eval.qa import evaluate_qa  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from .models import load  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    m, tok = load(model)
    sets = {"forget": load_qa(forget)}
    for i, r in enumerate(retain or []):
        sets[f"retain{i if i else ''}"] = load_qa(r)
    return evaluate_qa(m, tok, sets, **options)
