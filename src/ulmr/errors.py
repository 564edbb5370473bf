"""User-facing errors: one line that names the file, line or field; the CLI prints it and exits 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class UlmrError(Exception):
    """An error caused by the user's input or environment (not a bug). Printed as one line."""

    exit_code = 2


class DataError(UlmrError):
    """A problem in an input data file; the message names file, line and field."""


class ConfigError(UlmrError):
    """An option out of range or inconsistent with another."""


class ModelError(UlmrError):
    """A model that cannot be found or loaded."""


def validation_message(e: ValidationError) -> str:
    """One line for the first pydantic error, naming the option as a flag."""
    err = e.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    field = ".".join(str(x) for x in err["loc"])
    return f"--{field.replace('_', '-')}: {msg}" if field else msg
