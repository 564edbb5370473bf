"""Validated options of a run (pydantic). The CLI, YAML config files and the Python API all build these."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError


class GenerationOptions(BaseModel):
    """How D_fr is generated (the paper's steps 1-4)."""

    model_config = ConfigDict(extra="forbid")

    num_rewrites: int = Field(2, ge=0, le=16, description="rewrites per forget instruction (the paper uses 2)")
    mode: Literal["refusal", "counterfactual"] = Field("refusal", description="kind of negative response")
    rewrite_prompt: str = Field("rewrite", description="built-in prompt name or path to a YAML prompt file")
    negative_prompt: Optional[str] = Field(None, description="built-in prompt name or YAML path (default: by mode)")
    backend: Literal["local", "openai"] = "local"
    generator: Optional[str] = Field(None, description="local generator model (default: the model being unlearned)")
    generator_dtype: Optional[Literal["float32", "bfloat16", "float16"]] = Field(
        None, description="dtype of the local generator (default: float32, the model's); training keeps float32")
    openai_base_url: Optional[str] = None
    openai_model: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_new_tokens: int = Field(64, ge=1)
    gen_batch_size: int = Field(32, ge=1)
    max_tries: int = Field(3, ge=1)


class UnlearnConfig(GenerationOptions):
    """Every option of ``ulmr unlearn`` (and of ``ulmr.unlearn``)."""

    model: str = "smollm2-135m"
    forget: str
    out: Path
    question_field: str = "question"
    answer_field: str = "answer"
    retain: Optional[str] = None
    anchor: Literal["builtin", "none"] = Field("builtin", description="retain anchor when no --retain is given")
    method: str = "ulmr"
    base: Optional[str] = Field(None, description="base model for 'retrain' when --model is a fine-tuned target")
    alpha: Union[float, Literal["auto"], None] = Field(None, description="averaging weight; default 0.5 for ulmr, none for other methods")
    allow_extrapolation: bool = False
    epochs: Optional[float] = Field(None, gt=0, description="training epochs (default: the method's)")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (default: the method's, by model size for ulmr)")
    retain_weight: Optional[float] = Field(None, ge=0, description="weight of the retain/anchor NLL term (default: the method's)")
    beta: Optional[float] = Field(None, gt=0, description="β of dpo/npo and of ulmr's answer term (default: the method's, 0.1)")
    answer_weight: Optional[float] = Field(
        None, ge=0, description="ulmr: weight γ of an NPO term on the key span of each D_fr row's original answer "
        "(default 0.03; 0: the paper's plain SFT)")
    answer_source: Literal["model", "data"] = Field(
        "model", description="ulmr's answer term: lower the key span in the model's own answer ('model') or in the data's ('data')")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = -1
    max_length: int = Field(512, ge=16)
    group_by_length: bool = Field(False, description="batch rows of similar length together (less padding)")
    seed: int = 0
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    keep_finetuned: bool = False
    overwrite: bool = False
    fresh: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    verify: bool = Field(False, description="run `ulmr verify` on the result (report in OUT/verify)")
    probe: Optional[str] = Field(None, description="held-out QA file for --alpha auto (default: the generated probe file)")
    checkpoint_steps: Optional[int] = Field(None, ge=0, description="training checkpoint every N steps (default: one per epoch; 0: none)")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        # Checked here so an unknown name fails before the model is loaded and D_fr generated.
        from .methods.registry import METHODS

        if v not in METHODS:
            raise ValueError(f"unknown method '{v}'; known: {', '.join(METHODS)}")
        return v

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha(cls, v):
        if isinstance(v, str) and v != "auto":
            try:
                v = float(v)
            except ValueError as e:
                raise ValueError(f"must be a number or 'auto', got {v!r}") from e
        if isinstance(v, float) and math.isnan(v):
            raise ValueError("must be a number, got NaN")
        return v

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.alpha, float):
            from .merge import check_alpha

            try:
                check_alpha(self.alpha, self.allow_extrapolation)
            except ConfigError as e:
                raise ValueError(str(e)) from e
        from .methods.registry import METHODS, get_method

        if self.beta is not None and METHODS[self.method].default_beta is None:
            with_beta = ", ".join(n for n, c in METHODS.items() if c.default_beta is not None)
            raise ValueError(f"--beta applies to {with_beta} only, not method '{self.method}'")
        try:  # the method's own checks (--answer-weight), before the model is loaded
            get_method(self.method, beta=self.beta, answer_weight=self.answer_weight)
        except ConfigError as e:
            raise ValueError(str(e)) from e
        if self.backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError("--backend openai needs --openai-base-url and --openai-model")
        return self

    def effective_alpha(self) -> float | str | None:
        """``--alpha``, else the method's ``default_alpha`` (ULMR: 0.5, the paper; others: None, no averaging)."""
        from .methods.registry import method_class

        return method_class(self.method).default_alpha if self.alpha is None else self.alpha
