"""``ulmr bench tofu``: the TOFU protocol end to end.

1. fine-tune the base model on forget + retain -> the **target** model; on the retain part only -> the
   **retain** model (Retraining). Both are cached under ``$ULMR_CACHE/bench/tofu`` keyed by model, data and
   fine-tuning settings, and reused by later runs;
2. evaluate the retain model (its per-item forget truth ratios are FQ's reference) and the target model;
3. unlearn the forget split from the target with every method (``retrain`` is the cached retain model itself):
   - ``--protocol curves`` (default): each method at its own defaults, evaluated at ``--curve-points`` points
     of one run (ULMR: one p_f at several α); one point per method chosen by the selection rule on half of the
     forget items, reported on the other half (:mod:`ulmr.benchmarks.curves`);
   - ``--protocol equal-steps``: every method for the same number of optimizer steps at one lr, evaluated once;
4. write results.json / results.csv / results.md / results.png.

``--scale mini``: forget split + the first ``train_retain`` (160 = 8 authors) rows of the matching retain
split as training data, evaluation capped (Forget 40, Retain 40, Real Authors 50, World Facts 50, 64 new
tokens). ``--scale full``: the whole TOFU protocol (full retain split, uncapped evaluation, 200 new tokens,
lr 1e-5, effective batch 32); run it under ``accelerate launch`` on GPUs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import ConfigDict, Field

from ..anchor import anchor_set, without_shared_entities
from ..atomic import write_jsonl
from ..config import Alpha, BatchSize, Count, Epochs, LearningRate, MaxLength, NewTokens, TrainConfig, Weight
from ..data.records import QARecord, read_jsonl
from ..data.tofu import ForgetSplit, _read_hub, load_tofu
from ..errors import ConfigError, DataError
from ..eval.tofu import evaluate_tofu, metrics_from_items, per_item_values
from ..methods.registry import display_name, method_class, method_names
from ..methods.retrain import Retrain
from ..metrics.truth_ratio import forget_quality
from ..models import cached_model_dir, load
from ..paths import cache_dir
from ..selection import split_items, tofu_rule
from ..training.data import equal_steps
from . import common, curves
from .common import Column, Job, Scatter, StageStore

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


class TofuBenchConfig(common.MethodDataOptions, curves.ProtocolChecks):
    """Options of ``ulmr bench tofu``; ``None`` means the scale's default (see :data:`SCALES`)."""

    model_config = ConfigDict(extra="forbid")
    bench: ClassVar[str] = BENCH

    model: str = "smollm2-135m"
    data: str
    forget_split: ForgetSplit = "forget01"
    methods: list[str] = Field(default_factory=lambda: method_names(BENCH))
    scale: Literal["mini", "full"] = "mini"
    protocol: Literal["curves", "equal-steps"] = Field(
        "curves", description="curves: every method at its own defaults, evaluated along its run (ULMR: at several α), one point "
        "chosen per method by the selection rule; equal-steps: every method at one shared budget (the tables before 2026-12)")
    curve_points: Count = Field(4, description="points evaluated along each gradient method's run (curves protocol)")
    curves_from: Optional[Path] = Field(
        None, description="a previous curves run's results.json with the same settings: the methods it holds keep its seed-0 "
        "curve and selected point, and only their seed reruns run")
    seeds: Count = 1
    seed_methods: Optional[list[str]] = Field(
        None, description="the methods whose selected point is rerun at --seeds (curves protocol; default every method)")
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
    allow_extrapolation: bool = Field(False, description="let --ulmr-alphas go above 1 (p_θ + α·(p_f − p_θ) beyond p_f)")
    ulmr_alphas: list[float] = Field(default_factory=lambda: list(curves.ALPHAS), description="ULMR's α points (curves protocol)")
    answer_weight: Optional[Weight] = Field(
        None, description="ULMR's answer term γ (default: ULMR's; 0 = the paper's plain SFT, as in the tables before 2026-11-29)")
    gen_max_new_tokens: NewTokens = Field(64, description="new tokens per generated rewrite / negative response (ULMR)")
    eval_batch_size: BatchSize = 16
    max_length: MaxLength = 512
    lora: bool = False
    # Default "base": a 135M target that memorised TOFU stops following the few-shot prompts, so with "target"
    # D_fr is 100% template fallbacks (docs/results/tofu.md); "target" is the paper's recipe.
    generator: Literal["target", "base"] = Field(
        "base", description="ULMR's generator: the model before TOFU fine-tuning, or the target model (the paper's p_θ)")

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


def anchor_rows(cfg: TofuBenchConfig, forget: list[QARecord], sets) -> list[QARecord]:
    """The built-in anchor answered by the base model, without the questions that name what the forget split or
    any evaluation set names (none with ``--anchor none``)."""
    if not any(common.takes_anchor(cfg.anchor, m) for m in cfg.methods):
        return []
    base = cached_model_dir(cfg.model)
    model, tok = load(str(base))
    texts = [f"{r.question} {r.answer}" for r in forget] + [f"{i.question} {i.answer}" for items in sets.values() for i in items]
    return without_shared_entities(anchor_set(model, tok, base), texts)


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
                       answer_weight=cfg.answer_weight if method_class(method).uses_original and not finetune else None,
                       retain_loss=None if finetune else common.retain_loss_for(cfg.retain_loss, method))


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
            "forget_examples": examples, "per_item": per_item_values(res["items"])}


def _eval_dir(model_dir: Path, cfg: TofuBenchConfig, sets, reference: list[float] | None) -> dict[str, Any]:

    model, tok = load(str(model_dir))
    return evaluate(model.eval(), tok, cfg, sets, reference)


def method_forget(cfg: TofuBenchConfig, method: str, target: Path, forget: list[QARecord], out: Path,
                  seed: int = 0) -> tuple[list[Any], dict[str, Any]]:
    """The forget side a method trains on: the forget split, or (ULMR) D_fr generated from it by the generator
    model (seed 0 for every seed under equal-steps; the run's seed under curves)."""
    cls = method_class(method)
    if not cls.generates_dfr:
        return list(forget), {}
    generator = str(target) if cfg.generator == "target" else cached_model_dir(cfg.model)
    gen_model, gen_tok = load(generator)
    suffix = _gen_suffix(cfg) + (f"-seed{seed}" if seed else "")
    rows, info = common.dfr_rows(forget, gen_model, gen_tok, out / "work" / f"{method}-generation{suffix}",
                                 cfg.gen_max_new_tokens, cfg.eval_batch_size, seed=seed, filters=cls.generation_filters)
    info["generator"] = cfg.generator
    write_jsonl(out / f"d_fr-{method}{suffix}.jsonl", rows)
    return rows, info


def unlearn_job(cfg: TofuBenchConfig, method: str, seed: int, target: Path, forget: list[QARecord], retain: list[QARecord],
                sets, reference: list[float], steps: int, out: Path) -> Job:
    """One equal-steps job: (ULMR: D_fr from the generator) -> train -> (ULMR: average) -> evaluate."""
    cls = method_class(method)
    tcfg = _train_config(cfg, method, seed, finetune=False, max_steps=steps)

    def run() -> dict[str, Any]:
        forget_items, info = method_forget(cfg, method, target, forget, out)
        model, tok, res = common.train_model(target, forget_items, retain, tcfg, out / "work" / f"{method}-seed{seed}",
                                             alpha=cfg.alpha if cls.default_alpha is not None else None)
        result = evaluate(model, tok, cfg, sets, reference)
        result["training"] = {"steps": res.steps, "seconds": round(res.seconds, 1), "train_tokens": res.train_tokens, **info}
        return result

    return Job(f"{method}-seed{seed}", method, seed, run, common.recipe_key(tcfg))


def curve_train_config(cfg: TofuBenchConfig, method: str, seed: int) -> TrainConfig:
    """A method at its own defaults (lr by model size, epochs) unless --lr / --epochs / --max-steps say otherwise."""
    return TrainConfig(method=method, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.get("batch_size"), grad_accum=cfg.get("grad_accum"),
                       max_steps=cfg.max_steps or -1, seed=seed, max_length=cfg.max_length, lora=cfg.lora, checkpoint_steps=0,
                       keep_checkpoints=False, answer_weight=cfg.answer_weight if method_class(method).uses_original else None,
                       retain_loss=common.retain_loss_for(cfg.retain_loss, method))


def curve_job(cfg: TofuBenchConfig, method: str, seed: int, target: Path, forget: list[QARecord], retain: list[QARecord],
              sets, reference: list[float], store: StageStore, only: dict[str, Any] | None = None) -> Job:
    """One curves job: the method's curve at seed 0, or (``only``) its selected point at another seed."""
    cls, stage = method_class(method), f"{method}-seed{seed}"
    tcfg = curve_train_config(cfg, method, seed)
    recipe = common.recipe_key(tcfg)

    def run() -> dict[str, Any]:
        forget_items, info = method_forget(cfg, method, target, forget, cfg.out, seed)
        points, res = curves.method_curve(store, stage, target, forget_items, retain, tcfg,
                                          cfg.out / "work" / stage, lambda m, tok: evaluate(m, tok, cfg, sets, reference),
                                          cfg.curve_points, cls.default_alpha is not None, only, cfg.ulmr_alphas, recipe)
        return {"curve": points, "training": curves.training_record(res, info)}

    return Job(stage, method, seed, run, recipe)


# --------------------------------------------------------------------------- the bench
COLUMNS = [Column(f"{t} R / P / TR (%)", (f"{s}.R", f"{s}.P", f"{s}.TR"), 100)
           for s, t in zip(SETS, ("Forget", "Retain", "Real Authors", "World Facts"))]
COLUMNS += [Column("FQ", ("FQ",), 1, 4), Column("MU (%)", ("MU",), 100)]


def stage_key(cfg: TofuBenchConfig, target: Path, retain: Path) -> str:
    """Stage results are valid for these models, caps and unlearning settings only."""
    s = {k: cfg.get(k) for k in SCALES["mini"] if not k.startswith("ft_") and k != "train_retain"}
    curve = {"protocol": cfg.protocol, "curve_points": cfg.curve_points, "lr": cfg.lr, "epochs": cfg.epochs} if cfg.protocol == "curves" else {}
    if cfg.protocol == "curves" and cfg.ulmr_alphas != list(curves.ALPHAS):
        curve["ulmr_alphas"] = cfg.ulmr_alphas
    return common.settings_key({**s, "target": target.name, "retain": retain.name, "alpha": cfg.alpha, "answer_weight": cfg.answer_weight, "max_steps": cfg.max_steps,
                                "gen_max_new_tokens": cfg.gen_max_new_tokens,
                                "lora": cfg.lora, "eval_batch_size": cfg.eval_batch_size,
                                **({"generator": cfg.generator} if cfg.generator != "target" else {}),
                                **({"retain_loss": cfg.retain_loss} if cfg.retain_loss else {}),
                                **({"anchor": cfg.anchor} if cfg.anchor != "method" else {}), **curve})


def reference_key(cfg: TofuBenchConfig, target: Path, retain: Path) -> str:
    """The target's and the retain model's evaluations depend on the models and the evaluation settings only:
    runs that differ in their unlearning settings share them."""
    return common.settings_key({"target": target.name, "retain": retain.name, **eval_limits(cfg), "max_new_tokens": cfg.get("max_new_tokens"),
                                "eval_batch_size": cfg.eval_batch_size, "records": "per_item"})


def _gen_suffix(cfg: TofuBenchConfig) -> str:
    return "" if cfg.generator == "target" else f"-{cfg.generator}"


@dataclass
class _Run:
    """What both protocols share: data, the cached models, their evaluations and the stage store."""

    cfg: TofuBenchConfig
    forget: list[QARecord]
    retain: list[QARecord]
    sets: Any
    target_dir: Path
    retain_dir: Path
    store: StageStore
    ref: dict[str, Any]
    tgt: dict[str, Any]
    timings: dict[str, dict[str, Any]]
    started: float
    anchor: list[QARecord]

    def retain_side(self, method: str) -> list[QARecord]:
        """What ``method``'s unlearning runs get as their retain set: the training set's retain rows (+ the anchor)."""
        return self.retain + (self.anchor if common.takes_anchor(self.cfg.anchor, method) else [])

    @property
    def methods(self) -> list[str]:
        """The methods that unlearn from the target (Retraining is the retain model itself)."""
        return [m for m in self.cfg.methods if not method_class(m).starts_from_base]

    def notes(self) -> list[str]:
        cfg, n = self.cfg, self.ref["n"]
        caps = ", ".join(f"{t} {n[s]}" for s, t in zip(SETS, ("Forget", "Retain", "Real Authors", "World Facts")))
        return [
            f"model {cfg.model}; scale {cfg.scale}; forget split {cfg.forget_split}; training set {len(self.forget)} forget + {len(self.retain)} retain QA"
            + (f"; {', '.join(display_name(m) for m in self.methods if common.takes_anchor(cfg.anchor, m))} also train(s) on {len(self.anchor)} "
               f"built-in anchor questions beside the retain rows (--anchor {cfg.anchor})." if self.anchor else "."),
            f"evaluation items: {caps}; greedy, at most {cfg.get('max_new_tokens')} new tokens.",
            f"target/retain fine-tuning: lr {cfg.get('ft_lr'):g}, {cfg.get('ft_epochs'):g} epochs, batch {cfg.get('ft_batch_size')}"
            f" x {cfg.get('ft_grad_accum')}.",
            "FQ = KS-test p-value vs the retain model's forget truth ratios (depends on the item count); MU = harmonic mean of "
            "Retain/RA/WF x R/P/TR. TR: Forget mean(min(R,1/R)), others mean(max(0,1-R)).",
        ]

    def payload(self, **extra: Any) -> dict[str, Any]:
        self.timings.update(self.store.timings)
        self.timings["total, this invocation"] = {"seconds": round(time.time() - self.started, 1), "reused": False}
        return {"benchmark": "tofu", "settings": self.cfg.model_dump(mode="json"),
                "resolved": {k: self.cfg.get(k) for k in SCALES["mini"]}, "models": {"target": str(self.target_dir), "retain": str(self.retain_dir)},
                "stages": str(self.store.root), "timings": self.timings, **extra}

    def title(self) -> str:
        return f"TOFU {self.cfg.forget_split}, {self.cfg.model} ({self.cfg.scale})"


def run_tofu_bench(cfg: TofuBenchConfig, show: bool = True) -> dict[str, Any]:
    """Run the whole protocol (resuming from ``cfg.out``) and write the outputs; returns results.json's content."""
    t0 = time.time()
    prior = curves.Prior.load(cfg.curves_from if cfg.protocol == "curves" else None, cfg.model_dump(mode="json"))
    forget, retain = training_sets(cfg)
    sets = load_tofu(cfg.data, cfg.forget_split)
    timings: dict[str, dict[str, Any]] = {}
    target_dir, retain_dir = cached_models(cfg, forget, retain, timings)
    refs = StageStore(cfg.out / "stages" / f"reference-{reference_key(cfg, target_dir, retain_dir)}")
    ref = refs.run("eval-retain", lambda: _eval_dir(retain_dir, cfg, sets, None))
    tgt = refs.run("eval-target", lambda: _eval_dir(target_dir, cfg, sets, ref["forget_ratios"]))
    timings.update(refs.timings)
    store = StageStore(cfg.out / "stages" / stage_key(cfg, target_dir, retain_dir))
    run = _Run(cfg, forget, retain, sets, target_dir, retain_dir, store, ref, tgt, timings, t0, anchor_rows(cfg, forget, sets))
    return _equal_steps(run, show) if cfg.protocol == "equal-steps" else _curves(run, show, prior)


def _equal_steps(run: _Run, show: bool) -> dict[str, Any]:
    """Every method at one shared budget: the same optimizer steps and lr; one row per method (mean over seeds)."""
    cfg = run.cfg
    n_steps = cfg.max_steps or equal_steps(len(run.forget), cfg.get("batch_size"), cfg.get("grad_accum"), cfg.get("epochs"))
    reference = run.ref["forget_ratios"]
    jobs = [unlearn_job(cfg, m, s, run.target_dir, run.forget, run.retain_side(m), run.sets, reference, n_steps, cfg.out)
            for m in run.methods for s in range(cfg.seeds)]
    done = common.run_jobs(run.store, jobs)
    rows = [common.aggregate("Base (target)", "reference", [run.tgt]), common.aggregate(Retrain.display_name, "reference", [run.ref])]
    rows += common.method_rows(run.methods, lambda m: done[m])
    notes = run.notes()
    notes.insert(2, f"protocol equal-steps: {n_steps} optimizer steps for every method, lr {cfg.get('lr'):g}, batch {cfg.get('batch_size')}"
                 f" x {cfg.get('grad_accum')}; ULMR alpha {cfg.alpha:g}, {common.ulmr_term(cfg.answer_weight, cfg.retain_loss)}, generator {cfg.generator}"
                 f" model; seeds {cfg.seeds}; Retraining = the retain model.")
    notes += common.dfr_notes(cfg.methods, done)
    payload = run.payload(unlearning_steps=n_steps, training={m: [r.get("training") for r in done[m]] for m in done})
    scatter = Scatter("forget.R", "MU", "Forget ROUGE-L recall (%)", "Model utility (%)",
                      f"TOFU {cfg.forget_split} ({cfg.scale}): forget ROUGE vs utility", 100)
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, run.title(), notes, scatter, show)
    return {**payload, "rows": rows, "paths": paths}


def _with_reference(point: dict[str, Any], reference: list[float]) -> dict[str, Any]:
    """The point with the retain model's raw forget ratios beside its own (FQ on any subset of the items)."""
    return {**point, "per_item": {**point["per_item"], "forget:ref_ratio": list(reference)}}


def _curves(run: _Run, show: bool, prior: curves.Prior) -> dict[str, Any]:
    """Every method at its own defaults along its curve (or its curve from ``prior``); one point per method chosen
    by the rule on the selection half, reported on the report half (seeds > 1: the selected point rerun at seeds
    1..N-1)."""
    cfg, reference = run.cfg, run.ref["forget_ratios"]
    view = curves.View(metrics_from_items, lambda g: g == "forget", tofu_rule(run.tgt["metrics"]["MU"], run.ref["metrics"]["MU"]))
    refs = {"Base (target)": curves.reference_summary(_with_reference(run.tgt, reference), view),
            Retrain.display_name: curves.reference_summary(_with_reference(run.ref, reference), view)}
    prior.check_references(refs)
    job = lambda m, s, only=None: curve_job(cfg, m, s, run.target_dir, run.forget, run.retain_side(m), run.sets, reference, run.store, only)  # noqa: E731
    taken = {m: p for m in run.methods if (p := prior.take(m, common.recipe_key(curve_train_config(cfg, m, 0)))) is not None}
    done = common.run_jobs(run.store, [job(m, 0) for m in run.methods if m not in taken])
    methods: dict[str, dict[str, Any]] = {}
    for m in run.methods:
        if m in taken:
            summary, training, recipe = {k: taken[m][k] for k in ("curve", "selected")}, taken[m]["training"], taken[m].get("recipe")
        else:
            res = done[m][0]
            summary, training, recipe = curves.summarise([_with_reference(p, reference) for p in res["curve"]], view), res["training"], res.get("recipe")
        if common.reruns_seeds(cfg.seeds, cfg.seed_methods, m):
            point = summary["selected"]["point"]
            again = common.run_jobs(run.store, [job(m, s, point) for s in range(1, cfg.seeds)])[m]
            summary["selected"] = curves.seed_summary(summary["selected"], [_with_reference(r["curve"][0], reference) for r in again], view)
        methods[display_name(m)] = {"method": m, "recipe": recipe, **summary, "training": training}
    rows = curves.curve_rows(refs, methods)
    n_sel, n_rep = (len(h) for h in split_items(run.ref["n"]["forget"], curves.SPLIT_SEED))
    notes = run.notes()
    notes[2:2] = [
        f"protocol curves: each method at its own lr and epochs (training column of results.json), evaluated at {cfg.curve_points} points "
        f"of one run; ULMR: one p_f at α {', '.join(f'{a:g}' for a in cfg.ulmr_alphas)}, {common.ulmr_term(cfg.answer_weight, cfg.retain_loss)}, "
        f"generator {cfg.generator} model; Retraining = the retain model.",
        f"selection rule: {view.rule.describe()}; chosen on {n_sel} forget items (selection half), reported on the other {n_rep} "
        f"(report half; utility sets whole); † = no point held utility. " + common.seeds_note(cfg.seeds, cfg.seed_methods),
    ]
    notes += common.dfr_notes(cfg.methods, {v["method"]: [{"training": v["training"]}] for v in methods.values()})
    payload = run.payload(rule=view.rule.describe(), methods=methods, references=refs)
    plot = lambda path: curves.curve_png(path, methods, {n: r["metrics"] for n, r in refs.items()}, "MU", "forget.R",  # noqa: E731
                                         "Model utility (%)", "Forget ROUGE-L recall (%, report half)",
                                         f"TOFU {cfg.forget_split} ({cfg.scale}): forgetting vs utility", 100)
    extra = [curves.interval_table(run.title(), refs, methods, COLUMNS)]
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, run.title(), notes, plot, show, extra)
    return {**payload, "rows": rows, "paths": paths}


def check_config(cfg: TofuBenchConfig) -> None:
    """Fail before any training when ``--data`` is a path but not a directory."""
    path = Path(str(cfg.data)).expanduser()
    if (path.exists() or str(cfg.data).startswith((".", "/", "~"))) and not path.is_dir():
        raise ConfigError(f"--data {cfg.data}: not a TOFU data directory")
