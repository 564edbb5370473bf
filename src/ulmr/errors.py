"""User-facing errors: one line that names the file, line or field; the CLI prints it and exits 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")


class UlmrError(Exception):
    """An error caused by the user's input or environment (not a bug). Printed as one line."""

    exit_code = 2


class DataError(UlmrError):
    """A problem in an input data file; the message names file, line and field."""


class ConfigError(UlmrError):
    """An option out of range or inconsistent with another."""


class ModelError(UlmrError):
    """A model that cannot be found or loaded."""


BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def flag(field: str) -> str:
    """The command-line flag of an option field: ``max_new_tokens`` -> ``--max-new-tokens``."""
    return f"--{field.replace('_', '-')}"


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _describe(err: dict[str, Any]) -> str:
    """The message of one pydantic error: bounds as ``must be >= 1 (got 0)``, choices as ``must be 'a' or 'b'``."""
    ctx, value = err.get("ctx") or {}, err.get("input")
    if err["type"] in BOUNDS and ctx:
        return f"must be {BOUNDS[err['type']]} {_num(next(iter(ctx.values())))} (got {_num(value)})"
    if err["type"] == "literal_error" and "expected" in ctx:
        return f"must be {ctx['expected']} (got {value!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return msg if err["type"] == "value_error" or isinstance(value, (dict, list)) else f"{msg} (got {value!r})"


def validation_message(e: ValidationError, name: Callable[[str], str] = flag) -> str:
    """One line for the first pydantic error, naming the option by ``name(field)`` (default: as a flag)."""
    err = e.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    msg = _describe(err)
    return f"{name(field)}: {msg}" if field else msg


def validated(config: type[M], /, **values: Any) -> M:
    """``model`` from the options given; options left at None take the model's defaults (one source of
    defaults and bounds). A bad value raises a one-line ConfigError naming the flag."""
    from pydantic import ValidationError  # deferred: pydantic only where options are validated

    try:
        return config(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        raise ConfigError(validation_message(e)) from e
