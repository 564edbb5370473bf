"""Helpers shared by CLI commands: YAML config files whose values flags override, and option parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import ConfigError, flag, validated, validation_message  # noqa: F401 - validated: for the commands

M = TypeVar("M", bound=BaseModel)

CONFIG_OPTION = typer.Option(None, "--config", help="YAML file holding any option of this command; flags given on the command line override it.")


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (keys may use - or _)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(model: type[M], ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> M:
    """Validate options into ``model``: defaults < YAML file < flags given on the command line."""
    merged: dict[str, Any] = {}
    file_values = load_yaml(config) if config else {}
    unknown = set(file_values) - set(model.model_fields)
    if unknown:
        raise ConfigError(f"{config}: unknown option(s) {', '.join(sorted(unknown))}")
    for name, value in values.items():
        if name not in model.model_fields:
            continue
        from_cli = _given(ctx, name)
        if from_cli or name not in file_values:
            if value is not None or from_cli:
                merged[name] = value
    for name, value in file_values.items():
        if not (name in values and _given(ctx, name)):
            merged[name] = value
    from_file = {n for n in file_values if not (n in values and _given(ctx, n))}
    try:
        return model(**merged)
    except ValidationError as e:
        raise ConfigError(validation_message(e, lambda f: f"{config}: {f}" if f in from_file else flag(f))) from e


def check_value(name: str, value: Any, kind: Any) -> Any:
    """Validate one option against a bounded type of :mod:`ulmr.config` (e.g. ``Threads``); ``name`` is its flag."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as e:
        raise ConfigError(f"{name}: {validation_message(e)}") from e


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (or its environment variable), not defaulted.

    By the source's name: typer bundles its own click, whose ParameterSource is not ``click.core``'s."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

