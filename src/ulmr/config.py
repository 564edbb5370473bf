"""Validated options of a run (pydantic), each defined once: one class per stage, and :class:`UnlearnConfig`
(every option of ``ulmr unlearn``) composed of them. The CLI, YAML config files, the Python API and the
benchmarks all build these; a stage function takes its own stage's class (:meth:`UnlearnConfig.stage`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError
from .methods.registry import METHODS, get_method, method_class

AnswerSource = Literal["model", "data"]
S = TypeVar("S", bound=BaseModel)



def check_alpha(alpha: float, allow_extrapolation: bool = False, allow_zero: bool = False) -> float:
    """Validate α: 0 < α ≤ 1 (0 ≤ α with ``allow_zero``), α > 1 only with ``allow_extrapolation``."""
    if alpha is None or isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha):
        raise ConfigError(f"--alpha must be a number, got {alpha!r}")
    low_ok = alpha >= 0 if allow_zero else alpha > 0
    if not low_ok:
        raise ConfigError(f"--alpha {alpha} is out of range: need {'0 <=' if allow_zero else '0 <'} alpha <= 1")
    if alpha > 1 and not allow_extrapolation:
        raise ConfigError(f"--alpha {alpha} > 1 extrapolates the task vector; pass --allow-extrapolation to allow it")
    return float(alpha)


class Seeded(BaseModel):
    """The seed every stage shares."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="random seed (generation sampling, data order, refusal draws)")


class GenerateConfig(Seeded):
    """The generation stage: how D_fr is built (the paper's steps 1-4), read by :func:`ulmr.generate.restructure`.

    Two fields are dumped under their pre-composition names (``batch_size``, ``probe``) so the generation
    cache key (:func:`ulmr.generate.restructure.config_hash`) of existing caches stays the same."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_rewrites: int = Field(2, ge=0, le=16, description="rewrites per forget instruction (the paper uses 2); rows per item = k + 1")
    mode: Literal["refusal", "counterfactual"] = Field("refusal", description="kind of negative response")
    rewrite_prompt: str = Field("rewrite", description="built-in prompt name or path to a YAML prompt file")
    negative_prompt: Optional[str] = Field(None, description="built-in prompt name or YAML path (default: negative_<mode>)")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1, le=1024, description="new tokens per generated rewrite or negative response")
    gen_batch_size: int = Field(32, ge=1, serialization_alias="batch_size", description="generation batch size")
    max_tries: int = Field(3, ge=1, le=20, description="generation rounds before a slot gets its template fallback")
    probe_rewrites: bool = Field(True, serialization_alias="probe", description="also one held-out rewrite per item (the probe file)")


class BackendConfig(BaseModel):
    """Which generator answers the generation prompts (:func:`ulmr.pipeline.make_backend`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = "local"
    generator: Optional[str] = Field(None, description="local generator model (default: the model being unlearned)")
    generator_dtype: Optional[Literal["float32", "bfloat16", "float16"]] = Field(
        None, description="dtype of the local generator (default: float32, the model's); training keeps float32")
    openai_base_url: Optional[str] = None
    openai_model: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"

    @model_validator(mode="after")
    def _openai(self):
        if self.backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError("--backend openai needs --openai-base-url and --openai-model")
        return self


class TrainConfig(Seeded):
    """The training stage (:func:`ulmr.train.train_unlearn`). ``None`` for epochs, lr, beta, retain_weight and
    answer_weight means the method's default."""

    model_config = ConfigDict(extra="forbid")

    method: str = "ulmr"
    epochs: Optional[float] = Field(None, gt=0, description="training epochs (default: the method's)")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (default: the method's, by model size for ulmr)")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = -1
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler: str = "linear"
    max_length: int = Field(512, ge=16)
    group_by_length: bool = Field(False, description="batch rows of similar length together (less padding; docs/performance.md)")
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: Optional[list[str]] = None  # None: peft's default for the architecture
    retain_weight: Optional[float] = Field(None, ge=0, description="weight of the retain/anchor NLL term (default: the method's)")
    beta: Optional[float] = Field(None, gt=0, description="β of dpo/npo and of ulmr's answer term (default: the method's, 0.1)")
    answer_weight: Optional[float] = Field(
        None, ge=0, description="ulmr: weight γ of an NPO term on the key span of each D_fr row's original answer "
        "(default 0.03; 0: the paper's plain SFT)")
    answer_source: AnswerSource = Field(
        "model", description="ulmr's answer term: lower the key span in the model's own answer ('model') or in the data's ('data')")
    refusals_file: Optional[str] = None
    checkpoint_steps: Optional[int] = Field(None, ge=0, description="training checkpoint every N steps (default: one per epoch; 0: none)")
    keep_checkpoints: bool = True  # False: delete output_dir/checkpoints after a finished run
    logging_steps: int = Field(5, ge=1)
    bf16: bool = False
    gradient_checkpointing: bool = False
    num_threads: Optional[int] = None  # CPU threads; None: cores / local processes
    eval_probe: bool = False
    probe_items: int = Field(4, ge=1)
    probe_rouge: bool = False
    keep_best_epoch: bool = False
    probe_min_forget_rise: float = 0.0

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        # Checked here so an unknown name fails before the model is loaded and D_fr generated.
        if v not in METHODS:
            raise ValueError(f"unknown method '{v}'; known: {', '.join(METHODS)}")
        return v

    @model_validator(mode="after")
    def _method_options(self):
        if self.beta is not None and method_class(self.method).default_beta is None:
            with_beta = ", ".join(n for n, c in METHODS.items() if c.default_beta is not None)
            raise ValueError(f"--beta applies to {with_beta} only, not method '{self.method}'")
        try:  # the method's own checks (--answer-weight), before the model is loaded
            get_method(self.method, beta=self.beta, answer_weight=self.answer_weight)
        except ConfigError as e:
            raise ValueError(str(e)) from e
        return self


class RunOptions(BaseModel):
    """What ``ulmr unlearn`` adds around the stages: inputs, output, retain set, averaging, housekeeping."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    forget: str
    out: Path
    question_field: str = "question"
    answer_field: str = "answer"
    retain: Optional[str] = None
    anchor: Literal["builtin", "none"] = Field("builtin", description="retain anchor when no --retain is given")
    base: Optional[str] = Field(None, description="base model for methods that start from it (retrain) when --model is a fine-tuned target")
    alpha: Union[float, Literal["auto"], None] = Field(None, description="averaging weight; default: the method's (0.5 for ulmr, none for the others)")
    allow_extrapolation: bool = False
    keep_finetuned: bool = False
    overwrite: bool = False
    fresh: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    verify: bool = Field(False, description="run `ulmr verify` on the result (report in OUT.records/verify)")
    card_include_examples: bool = Field(False, description="show a few forget questions on the model card (README.md); by default the card has only the forget set's hash and size")
    probe: Optional[str] = Field(None, description="held-out QA file for --alpha auto (default: the generated probe file)")

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
    def _alpha_range(self):
        if isinstance(self.alpha, float):
            try:
                check_alpha(self.alpha, self.allow_extrapolation)
            except ConfigError as e:
                raise ValueError(str(e)) from e
        return self


class UnlearnConfig(GenerateConfig, BackendConfig, TrainConfig, RunOptions):
    """Every option of ``ulmr unlearn`` (and of ``ulmr.unlearn``): the stages' options plus the run's own."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    def stage(self, cls: type[S]) -> S:
        """The options of one stage (``GenerateConfig``, ``BackendConfig``, ``TrainConfig``), validated by its class."""
        return cls.model_validate(self.model_dump(include=set(cls.model_fields)))

    def effective_alpha(self) -> float | str | None:
        """``--alpha``, else the method's ``default_alpha`` (ULMR: 0.5, the paper; others: None, no averaging)."""
        return method_class(self.method).default_alpha if self.alpha is None else self.alpha
