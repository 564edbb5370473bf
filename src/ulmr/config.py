"""Validated options of a run (pydantic), each defined once: one class per stage, and :class:`UnlearnConfig`
(every option of ``ulmr unlearn``) composed of them. The CLI, YAML config files, the Python API and the
benchmarks all build these; a stage function takes its own stage's class (:meth:`UnlearnConfig.stage`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Optional, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .data.tofu import ForgetSplit
from .errors import ConfigError
from .methods.base import RetainLoss
from .methods.registry import METHODS, get_method, method_class
from .methods.ulmr import ULMR
from .methods.ulmr_paper import ULMRPaper
from .selection import RETAIN_SHARE, UTILITY_DROP

AnswerSource = Literal["model", "data"]
S = TypeVar("S", bound=BaseModel)

# Bounded option types, one source per bound: every config below, the benchmark configs, ``ulmr verify``'s
# and the option models of commands without a stage config (compare, sweep, eval) use these.
LearningRate = Annotated[float, Field(gt=0)]
Epochs = Annotated[float, Field(gt=0)]
BatchSize = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=1)]  # steps, items, limits, repeats
NewTokens = Annotated[int, Field(ge=1, le=1024)]  # new tokens per generated or evaluated answer
Seed = Annotated[int, Field(ge=0, lt=2**32)]
Weight = Annotated[float, Field(ge=0)]  # a loss term's weight, a threshold
Fraction = Annotated[float, Field(ge=0, le=1)]
Threads = Annotated[int, Field(ge=1)]
MaxLength = Annotated[int, Field(ge=16)]  # tokens per training example
Dtype = Literal["float32", "bfloat16", "float16"]



def alpha_problem(alpha: object, allow_extrapolation: bool = False, allow_zero: bool = False, hint: bool = True) -> str | None:
    """What is wrong with α, or None: 0 < α ≤ 1 (0 ≤ α with ``allow_zero``), α > 1 only with ``allow_extrapolation``
    (``hint``: the message names that flag). The one rule for every averaging weight."""
    if alpha is None or isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha):
        return f"must be a number (got {alpha!r})"
    if not (alpha >= 0 if allow_zero else alpha > 0):
        return f"must be {'>=' if allow_zero else '>'} 0 (got {alpha:g})"
    if alpha > 1 and not allow_extrapolation:
        return f"must be <= 1 (got {alpha:g})" + ("; pass --allow-extrapolation to extrapolate the task vector" if hint else "")
    return None


def check_alpha(alpha: float, allow_extrapolation: bool = False, allow_zero: bool = False) -> float:
    """Validate α (:func:`alpha_problem`); a ConfigError naming ``--alpha`` when it is out of range."""
    problem = alpha_problem(alpha, allow_extrapolation, allow_zero)
    if problem:
        raise ConfigError(f"--alpha: {problem}")
    return float(alpha)


def _alpha(alpha: float) -> float:
    problem = alpha_problem(alpha, hint=False)
    if problem:
        raise ValueError(problem)
    return alpha


Alpha = Annotated[float, AfterValidator(_alpha)]  # an averaging weight where α > 1 is not offered


class Seeded(BaseModel):
    """The seed every stage shares."""

    model_config = ConfigDict(extra="forbid")

    seed: Seed = Field(0, description="random seed (generation sampling, data order, refusal draws)")


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
    max_new_tokens: NewTokens = Field(64, description="new tokens per generated rewrite or negative response")
    gen_batch_size: BatchSize = Field(32, serialization_alias="batch_size", description="generation batch size")
    max_tries: int = Field(3, ge=1, le=20, description="generation rounds before a slot gets its template fallback")
    probe_rewrites: bool = Field(True, serialization_alias="probe", description="also one held-out rewrite per item (the probe file)")
    filters: Literal["full", "paper"] = Field(
        "full", description="'full': the key-span, entity and refusal filters of ulmr.generate.filters; 'paper': only empty, "
        "identical and duplicate texts are rejected (the paper filters nothing)")


class BackendConfig(BaseModel):
    """Which generator answers the generation prompts (:func:`ulmr.pipeline.make_backend`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = "local"
    generator: Optional[str] = Field(None, description="local generator model (default: the model being unlearned)")
    generator_dtype: Optional[Dtype] = Field(
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
    epochs: Optional[Epochs] = Field(None, description="training epochs (default: the method's)")
    lr: Optional[LearningRate] = Field(None, description="learning rate (default: the method's, by model size for ulmr)")
    batch_size: BatchSize = 4
    grad_accum: Count = 1
    max_steps: int = Field(-1, ge=-1, description="optimizer steps (-1: by epochs)")
    weight_decay: Weight = 0.01
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler: str = "linear"
    max_length: MaxLength = 512
    group_by_length: bool = Field(False, description="batch rows of similar length together (less padding; docs/performance.md)")
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: Optional[list[str]] = None  # None: peft's default for the architecture
    retain_weight: Optional[Weight] = Field(None, description="weight of the retain/anchor NLL term (default: the method's)")
    retain_loss: Optional[RetainLoss] = Field(
        None, description="ulmr's retain/anchor term: NLL of the retain answers ('nll', default) or KL to the model before "
        "training at their positions ('kl')")
    beta: Optional[float] = Field(None, gt=0, description="β of dpo/npo and of ulmr's answer term (default: the method's, 0.1)")
    answer_weight: Optional[Weight] = Field(
        None, description="ulmr: weight γ of an NPO term on the key span of each D_fr row's original answer "
        f"(default {ULMR.default_answer_weight:g}; 0: the paper's plain SFT)")
    answer_source: AnswerSource = Field(
        "model", description="ulmr's answer term: lower the key span in the model's own answer ('model') or in the data's ('data')")
    refusals_file: Optional[str] = None
    checkpoint_steps: Optional[int] = Field(None, ge=0, description="training checkpoint every N steps (default: one per epoch; 0: none)")
    keep_checkpoints: bool = True  # False: delete output_dir/checkpoints after a finished run
    logging_steps: Count = 5
    bf16: bool = False
    gradient_checkpointing: bool = False
    num_threads: Optional[Threads] = None  # CPU threads; None: cores / local processes
    eval_probe: bool = False
    probe_items: Count = 4
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
            get_method(self.method, beta=self.beta, answer_weight=self.answer_weight, retain_loss=self.retain_loss)
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
    anchor: Literal["builtin", "none"] = Field(
        "builtin", description="the built-in retain anchor: used when no --retain is given, and beside --retain for methods "
        "whose recipe says so (ulmr); 'none': never")
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
    recipe: Literal["default", "paper"] = Field(
        "default", description="'paper': Shi et al.'s recipe (no anchor, no answer term, generation filters only for empty, identical and duplicate texts, k 2, alpha 0.5 unless given)")

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
        problem = alpha_problem(self.alpha, self.allow_extrapolation) if isinstance(self.alpha, float) else None
        if problem:
            raise ValueError(f"--alpha: {problem}")
        return self


class UnlearnConfig(GenerateConfig, BackendConfig, TrainConfig, RunOptions):
    """Every option of ``ulmr unlearn`` (and of ``ulmr.unlearn``): the stages' options plus the run's own."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    @model_validator(mode="after")
    def _paper_recipe(self):
        """``--recipe paper`` runs the paper's method (:class:`~ulmr.methods.ulmr_paper.ULMRPaper`); options that
        contradict it are errors. A method built on the paper's generation filters gets them."""
        if self.recipe == "paper":
            if not method_class(self.method).generates_dfr:
                raise ValueError(f"--recipe paper is a recipe of the D_fr method (got --method {self.method})")
            if self.retain:
                raise ValueError("--recipe paper fine-tunes on D_fr alone; drop --retain")
            if self.answer_weight not in (None, 0):
                raise ValueError(f"--recipe paper has no answer term; drop --answer-weight {self.answer_weight:g}")
            if self.num_rewrites != 2:
                raise ValueError(f"--recipe paper rewrites each instruction twice; drop --num-rewrites {self.num_rewrites}")
            self.method, self.anchor, self.answer_weight = ULMRPaper.name, "none", None
        if method_class(self.method).generation_filters == "paper":
            self.filters = "paper"
        return self

    def stage(self, cls: type[S]) -> S:
        """The options of one stage (``GenerateConfig``, ``BackendConfig``, ``TrainConfig``), validated by its class."""
        return cls.model_validate(self.model_dump(include=set(cls.model_fields)))

    def effective_alpha(self) -> float | str | None:
        """``--alpha``, else the method's ``default_alpha`` (ULMR and its paper recipe: 0.5; others: None)."""
        return self.alpha if self.alpha is not None else method_class(self.method).default_alpha


class CompareConfig(Seeded):
    """Options of ``ulmr compare`` (its bounds are the stage configs' types)."""

    model: str = "smollm2-135m"
    forget: str
    methods: list[str] = Field(min_length=1, description="methods to run, each on the same data and steps")
    retain: Optional[str] = None
    probe: Optional[str] = None
    steps: Optional[Count] = Field(None, description="optimizer steps of every method (default: ULMR's for --epochs)")
    epochs: Epochs = 3.0
    lr: Optional[LearningRate] = None
    alpha: Optional[Alpha] = Field(None, description="average every method with the base at this α")
    batch_size: BatchSize = 4
    max_new_tokens: NewTokens = 64
    out: Path = Path("runs/compare")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        return v


class SweepConfig(BaseModel):
    """Options of ``ulmr sweep`` that have bounds: the α grid (0 <= α <= 1: it interpolates only) and budgets."""

    model_config = ConfigDict(extra="forbid")

    alphas: list[Fraction] = Field(min_length=1)
    retain_share: Fraction = RETAIN_SHARE
    utility_drop: float = Field(UTILITY_DROP * 100, ge=0, le=100, description="points of 100")
    retain_limit: Optional[Count] = 32
    utility_limit: Optional[Count] = None
    select: Literal["auto", "none"] = "auto"
    max_new_tokens: NewTokens = 48


class EvalOptions(BaseModel):
    """Bounded options of ``ulmr eval tofu | rwku | qa`` (each command sets the ones it has)."""

    model_config = ConfigDict(extra="forbid")

    forget_split: ForgetSplit = "forget01"
    target: Optional[Count] = None
    limit: Optional[Count] = None
    limit_forget: Optional[Count] = None
    limit_retain: Optional[Count] = None
    limit_ra: Optional[Count] = None
    limit_wf: Optional[Count] = None
    utility: Literal["mmlu", "easy", "both"] = "mmlu"
    pool: Literal["levels", "items"] = "levels"
    max_new_tokens: NewTokens = 200
    extra_max_new_tokens: NewTokens = 128
    batch_size: BatchSize = 16
