"""Options of ``ulmr verify`` (pydantic): the CLI, the Python API and the ``unlearn --verify`` hook build these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, validation_message
from .attacks import ATTACKS


class VerifyConfig(BaseModel):
    """Budgets and thresholds of the checks; every default is stated in the report."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1, description="greedy tokens per answer")
    batch_size: int = Field(16, ge=1, description="evaluation batch size")
    relearn_steps: int = Field(10, ge=1, description="optimizer steps of relearning")
    relearn_lr: float = Field(1e-4, gt=0, description="learning rate of relearning (constant schedule)")
    relearn_batch_size: int = Field(4, ge=1, description="relearning batch size")
    quant_bits: tuple[int, ...] = Field((4, 8), description="weight bit widths of the quantisation checks")
    group_size: int = Field(128, ge=1, description="quantisation group size along a Linear's input dimension")
    threshold: float = Field(0.5, ge=0, description="a knowledge check passes when recovery <= threshold")
    refusal_threshold: float = Field(0.10, ge=0, le=1, description="over-refusal passes when it rises by <= this share")
    seed: int = 0
    attacks: tuple[str, ...] | None = Field(None, description="adversarial prompt types (None: all)")


def make_config(**options) -> VerifyConfig:
    """Validated :class:`VerifyConfig`; a bad value raises a one-line ConfigError naming the option."""
    try:
        cfg = VerifyConfig(**options)
    except ValidationError as e:
        raise ConfigError(validation_message(e)) from e
    bad = [b for b in cfg.quant_bits if not 2 <= b <= 8]
    if bad:
        raise ConfigError(f"--quant-bits: {bad[0]} is outside 2..8")
    if cfg.attacks is not None:

        unknown = [a for a in cfg.attacks if a not in ATTACKS]
        if unknown:
            raise ConfigError(f"--attacks: unknown '{unknown[0]}' (choose from {', '.join(ATTACKS)})")
    return cfg
