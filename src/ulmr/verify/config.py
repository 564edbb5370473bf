"""Options of ``ulmr verify`` (pydantic): the CLI, the Python API and the ``unlearn --verify`` hook build these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import BatchSize, Count, Fraction, LearningRate, NewTokens, Seed, Weight
from ..errors import ConfigError, flag, validation_message
from .attacks import ATTACKS

API_ONLY = ("quant_bits", "relearn_batch_size", "attacks")  # VerifyConfig fields without a `ulmr verify` flag


class VerifyConfig(BaseModel):
    """Budgets and thresholds of the checks; every default is stated in the report."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: NewTokens = Field(64, description="greedy tokens per answer")
    batch_size: BatchSize = Field(16, description="evaluation batch size")
    relearn_steps: Count = Field(10, description="optimizer steps of relearning")
    relearn_lr: LearningRate = Field(1e-4, description="learning rate of relearning (constant schedule)")
    relearn_batch_size: BatchSize = Field(4, description="relearning batch size")
    quant_bits: tuple[int, ...] = Field((4, 8), description="weight bit widths of the quantisation checks")
    group_size: Count = Field(128, description="quantisation group size along a Linear's input dimension")
    threshold: Weight = Field(0.5, description="a knowledge check passes when recovery <= threshold")
    refusal_threshold: Fraction = Field(0.10, description="over-refusal passes when it rises by <= this share")
    seed: Seed = 0
    attacks: tuple[str, ...] | None = Field(None, description="adversarial prompt types (None: all)")


def make_config(**options) -> VerifyConfig:
    """Validated :class:`VerifyConfig`; a bad value raises a one-line ConfigError naming the option."""
    try:
        cfg = VerifyConfig(**options)
    except ValidationError as e:
        raise ConfigError(validation_message(e, _option_name)) from e
    bad = [b for b in cfg.quant_bits if not 2 <= b <= 8]
    if bad:
        raise ConfigError(f"{_option_name('quant_bits')}: {bad[0]} is outside 2..8")
    if cfg.attacks is not None:
        unknown = [a for a in cfg.attacks if a not in ATTACKS]
        if unknown:
            raise ConfigError(f"{_option_name('attacks')}: unknown '{unknown[0]}' (choose from {', '.join(ATTACKS)})")
    return cfg


def _option_name(field: str) -> str:
    """How a message names an option: its ``ulmr verify`` flag, or, for the options only the Python API and
    the config take (``quant_bits``, ``attacks``), the VerifyConfig field."""
    return f"VerifyConfig.{field}" if field in API_ONLY else flag(field)
