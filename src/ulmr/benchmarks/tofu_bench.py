"""``ulmr bench tofu``: the TOFU protocol end to end.

1. fine-tune the base model on forget + retain -> the **target** model; on the retain part only -> the
   **retain** model (Retraining). Both are cached under ``$ULMR_CACHE/bench/tofu`` keyed by model, data and
   fine-tuning settings, and reused by later runs;
2. evaluate the retain model (its per-item forget truth ratios are FQ's reference) and the target model;
3. unlearn the forget split from the target with every method, on the same data and for the same number of
   optimizer steps (``retrain`` is the cached retain model itself), and evaluate each;
4. write results.json / results.csv / results.md / results.png.

``--scale mini``: forget split + the first ``train_retain`` (160 = 8 authors) rows of the matching retain
split as training data, evaluation capped (Forget 40, Retain 40, Real Authors 50, World Facts 50, 64 new
tokens). ``--scale full``: the whole TOFU protocol (full retain split, uncapped evaluation, 200 new tokens,
lr 1e-5, effective batch 32); run it under ``accelerate launch`` on GPUs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import Alpha, BatchSize, Count, Epochs, LearningRate, MaxLength, NewTokens, TrainConfig, Weight
from ..data.records import QARecord, read_jsonl
from ..errors import ConfigError, DataError
from ..methods.registry import method_class, method_names
from ..methods.retrain import Retrain
from . import common
from ..training.data import equal_steps
from .common import Column, Job, Scatter, StageStore
from ..data.tofu import ForgetSplit, load_tofu
from ..paths import cache_dir
from ..models import cached_model_dir, load
from ..metrics.truth_ratio import forget_quality
from ..eval.tofu import evaluate_tofu
from ..data.tofu import _read_hub
from ..atomic import write_jsonl

log = logging.getLogger("ulmr.bench")

BENCH = "tofu"  # the name methods list in their ``benchmarks``
SETS = ("forget", "retain", "real_authors", "world_facts")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}

# scale -> defaults of every option left unset
SCALES: dict[str, dict[str, Any]] = {
    "mini": dict(train_retain=160, eval_forget=40, eval_retain=40, eval_real_authors=50, eval_world_facts=50,
                 max_new_tokens=64, ft_lr=3e-4, ft_epochs=5.0, ft_batch_size=8, ft_grad_accum=1,
                 lr=2e-5, epochs=5.0, batch_size=4, grad_accum=1),
    "full": dict(train_retain=None, eval_forget=None, eval_retain=None, eval_real_authors=None, eval_world_facts=None,
                 max_new_tokens=200, ft_lr=1e-5, ft_epochs=5.0, ft_batch_size=4, ft_grad_accum=8,
                 lr=1e-5, epochs=5.0, batch_size=4, grad_accum=8),
}


class TofuBenchConfig(BaseModel):
    """Options of ``ulmr bench tofu``; ``None`` means the scale's default (see :data:`SCALES`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    data: str
    forget_split: ForgetSplit = "forget01"
    methods: list[str] = Field(default_factory=lambda: method_names(BENCH))
    scale: Literal["mini", "full"] = "mini"
    seeds: Count = 1
    out: Path = Path("runs/bench/tofu")
    train_retain: Optional[Count] = None
    eval_forget: Optional[Count] = None
    eval_retain: Optional[Count] = None
    eval_real_authors: Optional[Count] = None
    eval_world_facts: Optional[Count] = None
    max_new_tokens: Optional[NewTokens] = None
    ft_lr: Optional[LearningRate] = None
    ft_epochs: Optional[Epochs] = None
    ft_batch_size: Optional[BatchSize] = None
    ft_grad_accum: Optional[Count] = None
    lr: Optional[LearningRate] = None
    epochs: Optional[Epochs] = None
    batch_size: Optional[BatchSize] = None
    grad_accum: Optional[Count] = None
    max_steps: Optional[Count] = Field(None, description="unlearning steps for every method (default: epochs over the forget split)")
    alpha: Alpha = 0.5
    answer_weight: Optional[Weight] = Field(
        None, description="ULMR's answer term γ (default: ULMR's, 0.03; 0 = the paper's plain SFT, as in the tables before 2026-11-29)")
    gen_max_new_tokens: NewTokens = Field(64, description="new tokens per generated rewrite / negative response (ULMR)")
    eval_batch_size: BatchSize = 16
    max_length: MaxLength = 512
    lora: bool = False
    # Default "base": a 135M target that memorised TOFU stops following the few-shot prompts, so with "target"
    # D_fr is 100% template fallbacks (docs/results/tofu.md); "target" is the paper's recipe.
    generator: Literal["target", "base"] = Field(
        "base", description="ULMR's generator: the model before TOFU fine-tuning, or the target model (the paper's p_θ)")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return common.check_methods(v, method_names(BENCH))

    def get(self, name: str) -> Any:
        """The option's value, or the scale's default when unset."""
        v = getattr(self, name)
        return SCALES[self.scale][name] if v is None else v


# --------------------------------------------------------------------------- data
def _read_split(data: str, name: str) -> list[dict]:
    path = Path(str(data)).expanduser()
    if path.exists() or str(data).startswith((".", "/", "~")):
        return read_jsonl(path / f"{name}.jsonl")

    return _read_hub(str(data), name)


def _records(rows: list[dict], where: str) -> list[QARecord]:
    out = []
    for n, r in enumerate(rows, 1):
        if not isinstance(r.get("question"), str) or not isinstance(r.get("answer"), str):
            raise DataError(f"{where}:{n}: missing field 'question' or 'answer'")
        out.append(QARecord(r["question"], r["answer"]))
    return out


def training_sets(cfg: TofuBenchConfig) -> tuple[list[QARecord], list[QARecord]]:
    """(forget, retain) QA used to fine-tune the target model (forget + retain) and the retain model (retain)."""
    retain_name = RETAIN_OF[cfg.forget_split]
    forget = _records(_read_split(cfg.data, cfg.forget_split), f"{cfg.data}/{cfg.forget_split}")
    retain = _records(_read_split(cfg.data, retain_name), f"{cfg.data}/{retain_name}")
    cap = cfg.get("train_retain")
    return forget, retain[: cap or None]


def _data_key(cfg: TofuBenchConfig) -> str:
    path = Path(str(cfg.data)).expanduser()
    if path.is_dir():
        names = [cfg.forget_split, RETAIN_OF[cfg.forget_split], f"{cfg.forget_split}_perturbed", "retain_perturbed",
                 "real_authors_perturbed", "world_facts_perturbed"]
        return common.files_digest(path / f"{n}.jsonl" for n in names)
    return str(cfg.data)


# --------------------------------------------------------------------------- models
def _train_config(cfg: TofuBenchConfig, method: str, seed: int, *, finetune: bool, max_steps: int = -1) -> TrainConfig:
    p = "ft_" if finetune else ""
    return TrainConfig(method=method, lr=cfg.get(f"{p}lr"), epochs=cfg.get(f"{p}epochs"), batch_size=cfg.get(f"{p}batch_size"),
                       grad_accum=cfg.get(f"{p}grad_accum"), max_steps=max_steps, seed=seed, max_length=cfg.max_length,
                       lora=cfg.lora and not finetune, checkpoint_steps=None if finetune else 0, keep_checkpoints=False,
                       answer_weight=cfg.answer_weight if method_class(method).uses_original and not finetune else None)


def finetune_settings(cfg: TofuBenchConfig, which: str, n_train: int) -> dict[str, Any]:
    """What determines the cached target / retain model (its cache key)."""
    return {"bench": "tofu", "which": which, "model": cfg.model, "data": _data_key(cfg), "forget_split": cfg.forget_split,
            "train_retain": cfg.get("train_retain"), "n_train": n_train, "lr": cfg.get("ft_lr"), "epochs": cfg.get("ft_epochs"),
            "batch_size": cfg.get("ft_batch_size"), "grad_accum": cfg.get("ft_grad_accum"), "max_length": cfg.max_length, "seed": 0}


def cached_models(cfg: TofuBenchConfig, forget: list[QARecord], retain: list[QARecord],
                  timings: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """(target dir, retain dir): fine-tuned from ``cfg.model`` with NLL on the answers, or reused from the cache."""

    root = cache_dir() / "bench" / "tofu"
    base = cached_model_dir(cfg.model)

    def build(train: list[QARecord]):
        def _build(work: Path):
            # Retraining's loss = plain answer NLL on its retain argument: exactly supervised fine-tuning.
            model, tok, res = common.train_model(base, [], train, _train_config(cfg, Retrain.name, 0, finetune=True), work)
            return model, tok, {"steps": res.steps, "train_tokens": res.train_tokens, "items": len(train)}
        return _build

    target = common.cached_model(root, "target", finetune_settings(cfg, "target", len(forget) + len(retain)),
                                 build(forget + retain), timings)
    retain_dir = common.cached_model(root, "retain", finetune_settings(cfg, "retain", len(retain)), build(retain), timings)
    return target, retain_dir


# --------------------------------------------------------------------------- evaluation
def eval_limits(cfg: TofuBenchConfig) -> dict[str, int | None]:
    return {n: cfg.get(f"eval_{n}") for n in SETS}


def flat_metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """evaluate_tofu's result as flat keys: '<set>.R/P/TR', 'FQ', 'MU' (fractions)."""
    out: dict[str, float | None] = {f"{s}.{k}": result["sets"][s][k] for s in SETS for k in ("R", "P", "TR")}
    out["FQ"] = result["forget_quality"]
    out["MU"] = result["model_utility"]
    return out


def evaluate(model, tok, cfg: TofuBenchConfig, sets, reference: list[float] | None) -> dict[str, Any]:
    """A stage result: flat metrics, item counts and the raw forget truth ratios (the retain model's are FQ's reference)."""

    res = evaluate_tofu(model, tok, sets, cfg.forget_split, limits=eval_limits(cfg), max_new_tokens=cfg.get("max_new_tokens"),
                        batch_size=cfg.eval_batch_size, reference=reference)
    ratios = [r["truth_ratio_raw"] for r in res["items"]["forget"]]
    if reference is None:  # the retain model is its own reference: FQ = 1
        res["forget_quality"] = forget_quality(ratios, ratios)
    examples = [{"question": r["question"], "answer": r["answer"], "generated": r.get("generated")} for r in res["items"]["forget"][:3]]
    return {"metrics": flat_metrics(res), "n": {s: res["sets"][s]["n"] for s in SETS}, "forget_ratios": ratios,
            "forget_examples": examples}


def _eval_dir(model_dir: Path, cfg: TofuBenchConfig, sets, reference: list[float] | None) -> dict[str, Any]:

    model, tok = load(str(model_dir))
    return evaluate(model.eval(), tok, cfg, sets, reference)


def unlearn_job(cfg: TofuBenchConfig, method: str, seed: int, target: Path, forget: list[QARecord], retain: list[QARecord],
                sets, reference: list[float], steps: int, out: Path):
    """``run()`` of one unlearning job: (ULMR: D_fr from the generator) -> train -> (ULMR: average) -> evaluate."""
    cls = method_class(method)

    def run() -> dict[str, Any]:

        work = out / "work" / f"{method}-seed{seed}"
        forget_items: list[Any] = forget
        info: dict[str, Any] = {}
        if cls.generates_dfr:
            generator = str(target) if cfg.generator == "target" else cached_model_dir(cfg.model)
            gen_model, gen_tok = load(generator)
            forget_items, info = common.dfr_rows(forget, gen_model, gen_tok, out / "work" / f"ulmr-generation{_gen_suffix(cfg)}",
                                                 cfg.gen_max_new_tokens, cfg.eval_batch_size)
            info["generator"] = cfg.generator
            del gen_model

            write_jsonl(out / f"d_fr{_gen_suffix(cfg)}.jsonl", forget_items)
        tcfg = _train_config(cfg, method, seed, finetune=False, max_steps=steps)
        model, tok, res = common.train_model(target, forget_items, retain, tcfg, work,
                                             alpha=cfg.alpha if cls.default_alpha is not None else None)
        result = evaluate(model, tok, cfg, sets, reference)
        result["training"] = {"steps": res.steps, "seconds": round(res.seconds, 1), "train_tokens": res.train_tokens, **info}
        return result

    return run


# --------------------------------------------------------------------------- the bench
COLUMNS = [Column(f"{t} R / P / TR (%)", (f"{s}.R", f"{s}.P", f"{s}.TR"), 100)
           for s, t in zip(SETS, ("Forget", "Retain", "Real Authors", "World Facts"))]
COLUMNS += [Column("FQ", ("FQ",), 1, 4), Column("MU (%)", ("MU",), 100)]


def stage_key(cfg: TofuBenchConfig, target: Path, retain: Path) -> str:
    """Stage results are valid for these models, caps and unlearning settings only."""
    s = {k: cfg.get(k) for k in SCALES["mini"] if not k.startswith("ft_") and k != "train_retain"}
    return common.settings_key({**s, "target": target.name, "retain": retain.name, "alpha": cfg.alpha, "answer_weight": cfg.answer_weight, "max_steps": cfg.max_steps,
                                "gen_max_new_tokens": cfg.gen_max_new_tokens,
                                "lora": cfg.lora, "eval_batch_size": cfg.eval_batch_size,
                                **({"generator": cfg.generator} if cfg.generator != "target" else {})})


def _gen_suffix(cfg: TofuBenchConfig) -> str:
    return "" if cfg.generator == "target" else f"-{cfg.generator}"


def run_tofu_bench(cfg: TofuBenchConfig, show: bool = True) -> dict[str, Any]:
    """Run the whole protocol (resuming from ``cfg.out``) and write the outputs; returns results.json's content."""
    import time

    t0 = time.time()
    forget, retain = training_sets(cfg)
    sets = load_tofu(cfg.data, cfg.forget_split)
    timings: dict[str, dict[str, Any]] = {}
    target_dir, retain_dir = cached_models(cfg, forget, retain, timings)
    key = stage_key(cfg, target_dir, retain_dir)
    store = StageStore(cfg.out / "stages" / key)
    ref = store.run("eval-retain", lambda: _eval_dir(retain_dir, cfg, sets, None))
    reference = ref["forget_ratios"]
    tgt = store.run("eval-target", lambda: _eval_dir(target_dir, cfg, sets, reference))
    n_steps = cfg.max_steps or equal_steps(len(forget), cfg.get("batch_size"), cfg.get("grad_accum"), cfg.get("epochs"))
    jobs = [Job(f"{m}-seed{s}", m, s, unlearn_job(cfg, m, s, target_dir, forget, retain, sets, reference, n_steps, cfg.out))
            for m in cfg.methods if not method_class(m).starts_from_base for s in range(cfg.seeds)]
    done = common.run_jobs(store, jobs)
    timings.update(store.timings)
    rows = [common.aggregate("Base (target)", "reference", [tgt]), common.aggregate(Retrain.display_name, "reference", [ref])]
    rows += common.method_rows([m for m in cfg.methods if not method_class(m).starts_from_base], lambda m: done[m])
    n = ref["n"]
    caps = ", ".join(f"{t} {n[s]}" for s, t in zip(SETS, ("Forget", "Retain", "Real Authors", "World Facts")))
    notes = [
        f"model {cfg.model}; scale {cfg.scale}; forget split {cfg.forget_split}; training set {len(forget)} forget + {len(retain)} retain QA.",
        f"evaluation items: {caps}; greedy, at most {cfg.get('max_new_tokens')} new tokens.",
        f"unlearning: {n_steps} optimizer steps for every method, lr {cfg.get('lr'):g}, batch {cfg.get('batch_size')}"
        f" x {cfg.get('grad_accum')}; ULMR alpha {cfg.alpha:g}, {common.ulmr_term(cfg.answer_weight)}, generator {cfg.generator}"
        f" model; seeds {cfg.seeds}; Retraining = the retain model.",
        f"target/retain fine-tuning: lr {cfg.get('ft_lr'):g}, {cfg.get('ft_epochs'):g} epochs, batch {cfg.get('ft_batch_size')}"
        f" x {cfg.get('ft_grad_accum')}.",
        "FQ = KS-test p-value vs the retain model's forget truth ratios (depends on the item count); MU = harmonic mean of "
        "Retain/RA/WF x R/P/TR. TR: Forget mean(min(R,1/R)), others mean(max(0,1-R)).",
    ]
    notes += common.dfr_notes(cfg.methods, done)
    timings["total, this invocation"] = {"seconds": round(time.time() - t0, 1), "reused": False}
    payload = {"benchmark": "tofu", "settings": cfg.model_dump(mode="json"), "resolved": {k: cfg.get(k) for k in SCALES["mini"]},
               "unlearning_steps": n_steps, "models": {"target": str(target_dir), "retain": str(retain_dir)},
               "stages": str(store.root), "timings": timings,
               "training": {m: [r.get("training") for r in done[m]] for m in done}}
    scatter = Scatter("forget.R", "MU", "Forget ROUGE-L recall (%)", "Model utility (%)",
                      f"TOFU {cfg.forget_split} ({cfg.scale}): forget ROUGE vs utility", 100)
    title = f"TOFU {cfg.forget_split}, {cfg.model} ({cfg.scale})"
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, title, notes, scatter, show)
    return {**payload, "rows": rows, "paths": paths}


def check_config(cfg: TofuBenchConfig) -> None:
    """Fail before any training when ``--data`` is a path but not a directory."""
    path = Path(str(cfg.data)).expanduser()
    if (path.exists() or str(cfg.data).startswith((".", "/", "~"))) and not path.is_dir():
        raise ConfigError(f"--data {cfg.data}: not a TOFU data directory")
