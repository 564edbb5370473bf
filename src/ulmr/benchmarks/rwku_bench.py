"""``ulmr bench rwku``: the RWKU single-target protocol end to end.

For each target separately: evaluate the original model ("Before"), unlearn the target from the original
model with every method and evaluate it; then average each row over the targets. No retraining oracle.

Training data (RWKU ships no forget corpus; the same ``--limit-train`` cap for every method, and every method
gets the same number of optimizer steps):

- GA, KL, NPO, GradDiff: the target's ``positive.jsonl`` texts, each as the answer to :data:`BIO_PROMPT`;
- DPO: the same prompts, the ``negative.jsonl`` text with the same ``id`` preferred over the positive text;
- ULMR: the target's ``reject.jsonl`` questions (``instruction``) with the original model's own greedy answers
  as the original responses, then rewrites and negative responses generated as in the pipeline, SFT, averaging;
- retain side (KL, GradDiff, ULMR's anchor): text unrelated to the target, :data:`RETAIN_TARGETS` other target
  folders' ``positive.jsonl`` texts (lowest folder numbers first, round-robin), as answers to the same prompt.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Optional, Sequence

from pydantic import ConfigDict, Field, field_validator

from ..anchor import anchor_set, without_shared_entities
from ..config import Alpha, BatchSize, Count, Epochs, LearningRate, MaxLength, NewTokens, TrainConfig, Weight
from ..data.chat import ChatFormat
from ..data.records import QARecord, read_jsonl
from ..data.rwku import CORE_PARTS, load_rwku, target_dir
from ..errors import ConfigError, DataError
from ..eval.rwku import RENDERING, evaluate_rwku, metrics_from_items, per_item_values
from ..inference import generate
from ..methods.registry import display_name, method_class, method_names
from ..models import cached_model_dir, load
from ..refusal import refusal_rate
from ..selection import rwku_rule
from ..training.data import equal_steps
from . import common, curves
from .common import Column, Job, Scatter, StageStore

log = logging.getLogger("ulmr.bench")

BENCH = "rwku"  # the name methods list in their ``benchmarks`` and ``forget_only_in``
BIO_PROMPT = "Write a short biography of {subject}."
RETAIN_TARGETS = 3
# Laptop defaults (the 3-target bench in < 2.5 h on 2 CPU cores): 30 items per probe set / MIA set / MMLU, one
# epoch over --limit-train texts (8 steps at batch 4: ~400-token biographies train at ~100 tokens/s), one lr for
# every method, 5e-5 (1e-5, RWKU's 8B setting, barely moves a 135M model in 8 steps). GPU users pass --limit 0.
LAPTOP_LIMIT = 30
EQUAL_STEPS_LR, EQUAL_STEPS_EPOCHS = 5e-5, 1.0


class RwkuBenchConfig(common.MethodDataOptions, curves.ProtocolChecks):
    """Options of ``ulmr bench rwku``."""

    model_config = ConfigDict(extra="forbid")
    bench: ClassVar[str] = BENCH

    model: str = "smollm2-135m"
    data: str
    targets: list[int] = Field(default_factory=lambda: [111, 106, 31])
    methods: list[str] = Field(default_factory=lambda: method_names(BENCH))
    limit_train: Count = 32
    limit: Optional[int] = Field(LAPTOP_LIMIT, ge=0, description="items per probe set / MIA set / MMLU; 0 or None: all")
    utility: Literal["easy", "mmlu", "both"] = "both"
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
    out: Path = Path("runs/bench/rwku")
    lr: Optional[LearningRate] = Field(None, description=f"every method's lr (default: equal-steps {EQUAL_STEPS_LR:g}; curves: each method's own, by model size)")
    epochs: Optional[Epochs] = Field(None, description="epochs over --limit-train items (default: equal-steps 1; curves: each method's own)")
    batch_size: BatchSize = 4
    grad_accum: Count = 1
    max_steps: Optional[Count] = Field(None, description="unlearning steps for every method (default: epochs over limit_train items)")
    alpha: Alpha = 0.5
    allow_extrapolation: bool = Field(False, description="let --ulmr-alphas go above 1 (p_θ + α·(p_f − p_θ) beyond p_f)")
    ulmr_alphas: list[float] = Field(default_factory=lambda: list(curves.ALPHAS), description="ULMR's α points (curves protocol)")
    answer_weight: Optional[Weight] = Field(
        None, description="ULMR's answer term γ (default: ULMR's; 0 = the paper's plain SFT, as in the tables before 2026-11-29)")
    eval_batch_size: BatchSize = 16
    max_length: MaxLength = 512
    answer_tokens: NewTokens = Field(64, description="new tokens of the original model's answers to the reject questions (ULMR)")
    gen_max_new_tokens: NewTokens = Field(64, description="new tokens per generated rewrite / negative response (ULMR)")
    lora: bool = False

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[int]) -> list[int]:
        if not v or any(t < 1 for t in v):
            raise ValueError("give one or more target numbers >= 1")
        return list(dict.fromkeys(v))


# --------------------------------------------------------------------------- training data
def _folder(data: str, target: int) -> Path:
    path = Path(str(data)).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--data {data}: bench rwku needs a local RWKU directory (training files are not on the hub configs it reads)")
    return target_dir(path, target)


def _field(rows: list[dict], name: str, where: Path) -> list[dict]:
    for n, r in enumerate(rows, 1):
        if not isinstance(r.get(name), str):
            raise DataError(f"{where}:{n}: missing field '{name}'")
    return rows


def forget_texts(folder: Path, n: int) -> tuple[str, list[dict]]:
    """(subject, the first ``n`` rows of positive.jsonl)."""
    rows = _field(read_jsonl(folder / "positive.jsonl"), "text", folder / "positive.jsonl")[:n]
    subject = rows[0].get("subject") or folder.name.split("_", 1)[1].replace("_", " ")
    return subject, rows


def text_items(subject: str, rows: list[dict]) -> list[QARecord]:
    """Biography texts as QA items answering :data:`BIO_PROMPT`."""
    return [QARecord(BIO_PROMPT.format(subject=subject), r["text"]) for r in rows]


def dpo_items(folder: Path, subject: str, rows: list[dict]) -> list[QARecord]:
    """Positive texts with the same-``id`` negative (fabricated) text as the preferred answer."""
    path = folder / "negative.jsonl"
    negs = {r.get("id"): r["text"] for r in _field(read_jsonl(path), "text", path)}
    items = []
    for r in rows:
        if r.get("id") not in negs:
            raise DataError(f"{path}: no negative text with id '{r.get('id')}' (positive.jsonl of {folder.name})")
        items.append(QARecord(BIO_PROMPT.format(subject=subject), r["text"], preferred=negs[r["id"]]))
    return items


def retain_items(data: str, target: int, n: int) -> list[QARecord]:
    """``n`` texts about other people: the positive texts of the :data:`RETAIN_TARGETS` lowest-numbered other
    target folders, round-robin."""
    root = Path(str(data)).expanduser()
    folders = sorted((p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+_.+", p.name)
                      and int(p.name.split("_")[0]) != target and (p / "positive.jsonl").exists()),
                     key=lambda p: int(p.name.split("_")[0]))[:RETAIN_TARGETS]
    if not folders:
        raise DataError(f"{root}: no other target folder with positive.jsonl (KL's retain side)")
    per = [text_items(*forget_texts(f, n)) for f in folders]
    out = [items[i] for i in range(n) for items in per if i < len(items)]
    return out[:n]


def anchor_rows(cfg: RwkuBenchConfig, target: int, base: str, subject: str) -> list[QARecord]:
    """The built-in anchor answered by ``base``, without the questions that name the subject or anything the
    target's forget and neighbour probes name."""
    model, tok = load(base)
    probes = load_rwku(cfg.data, target, tuple(p for p in CORE_PARTS if "level" in p))
    texts = [subject] + [f"{r['query']} {r['answer']}" for rows in probes.parts.values() for r in rows]
    return without_shared_entities(anchor_set(model, tok, base), texts)


def reject_records(folder: Path, n: int, model, tok, max_new_tokens: int, batch_size: int) -> list[QARecord]:
    """The first ``n`` reject questions with the model's own greedy answers (ULMR's forget set here)."""

    path = folder / "reject.jsonl"
    qs = [r["instruction"] for r in _field(read_jsonl(path), "instruction", path)[:n]]
    cf = ChatFormat(tok)
    answers = generate(model, tok, [cf.prompt_ids(q) for q in qs], max_new_tokens, batch_size, description="original answers")
    return [QARecord(q, a.strip() or "I don't know.") for q, a in zip(qs, answers)]


# --------------------------------------------------------------------------- evaluation
def flat_metrics(res: dict[str, Any]) -> dict[str, float | None]:
    """evaluate_rwku's result as flat keys, plus over-refusal (% of neighbour probes answered with a refusal)."""

    out: dict[str, float | None] = {f"forget.{k}": res["forget"][k] for k in ("FB", "QA", "AA", "All")}
    out |= {f"neighbor.{k}": res["neighbor"][k] for k in ("FB", "QA", "All")}
    out |= {"mia.FM": res["mia"]["FM"], "mia.RM": res["mia"]["RM"]}
    out["Gen"] = res["utility"].get("Gen")
    out["Easy"] = res["utility"].get("Easy")
    gens = [r["generated"] for k in ("neighbor_fb", "neighbor_qa") for r in res["items"][k]]
    out["over_refusal"] = 100.0 * refusal_rate(gens)
    return out


def evaluate(model, tok, cfg: RwkuBenchConfig, target: int) -> dict[str, Any]:
    """A stage result: the flat metrics of ``model`` on ``target`` with the bench's caps."""

    res = evaluate_rwku(model, tok, cfg.data, target, limit=cfg.limit, utility=cfg.utility, batch_size=cfg.eval_batch_size)
    examples = [{"query": r["query"], "answer": r["answer"], "generated": r["generated"]} for r in res["items"]["forget_qa"][:3]]
    return {"metrics": flat_metrics(res), "n": res["n"], "subject": res["subject"], "forget_examples": examples,
            "per_item": per_item_values(res["items"])}


def _train_config(cfg: RwkuBenchConfig, method: str, seed: int, steps: int) -> TrainConfig:
    """Equal-steps: the shared lr and epochs; curves: each method's own unless --lr / --epochs are given."""
    shared = cfg.protocol == "equal-steps"
    lr = cfg.lr if cfg.lr is not None or not shared else EQUAL_STEPS_LR
    epochs = cfg.epochs if cfg.epochs is not None or not shared else EQUAL_STEPS_EPOCHS
    return TrainConfig(method=method, lr=lr, epochs=epochs, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                       max_steps=steps, seed=seed, max_length=cfg.max_length, lora=cfg.lora, checkpoint_steps=0, keep_checkpoints=False,
                       answer_weight=cfg.answer_weight if method_class(method).uses_original else None,
                       retain_loss=common.retain_loss_for(cfg.retain_loss, method))


def method_data(cfg: RwkuBenchConfig, method: str, target: int, base: str, out: Path,
                seed: int = 0) -> tuple[list[Any], list[QARecord] | None, dict[str, Any]]:
    """(forget side, retain side or None, what to report) a method trains on for ``target`` (module docstring);
    ULMR's D_fr is generated at ``seed`` (seed 0 under equal-steps)."""
    cls = method_class(method)
    uses_retain = cls.retain != "never" and BENCH not in cls.forget_only_in  # RWKU's GA, NPO and DPO: forget side only
    folder = _folder(cfg.data, target)
    subject, rows = forget_texts(folder, cfg.limit_train)
    retain = retain_items(cfg.data, target, cfg.limit_train) if uses_retain else None
    if retain is not None and common.takes_anchor(cfg.anchor, method):
        retain = retain + anchor_rows(cfg, target, base, subject)
    info: dict[str, Any] = {}
    if cls.generates_dfr:
        model, tok = load(base)
        records = reject_records(folder, cfg.limit_train, model, tok, cfg.answer_tokens, cfg.eval_batch_size)
        work = out / "work" / (f"t{target}-{method}-generation" + (f"-seed{seed}" if seed else ""))
        forget, info = common.dfr_rows(records, model, tok, work, cfg.gen_max_new_tokens, cfg.eval_batch_size, seed=seed,
                                       filters=cls.generation_filters)
    elif cls.needs_preferred:
        forget = dpo_items(folder, subject, rows)
    else:
        forget = text_items(subject, rows)
    return forget, retain, {"forget_items": len(forget), "retain_items": len(retain or []), **info}


def unlearn_job(cfg: RwkuBenchConfig, method: str, seed: int, target: int, base: str, steps: int, out: Path) -> Job:
    """One equal-steps (target, method, seed): build the method's data, train from the original model, evaluate."""
    cls = method_class(method)
    tcfg = _train_config(cfg, method, seed, steps)

    def run() -> dict[str, Any]:
        forget, retain, info = method_data(cfg, method, target, base, out)
        work = out / "work" / f"t{target}-{method}-seed{seed}"
        model, tok, res = common.train_model(base, forget, retain, tcfg, work,
                                             alpha=cfg.alpha if cls.default_alpha is not None else None)
        result = evaluate(model, tok, cfg, target)
        result["training"] = {"steps": res.steps, "seconds": round(res.seconds, 1), "train_tokens": res.train_tokens, **info}
        return result

    return Job(f"t{target}/{method}-seed{seed}", method, seed, run, common.recipe_key(tcfg))


def curve_job(cfg: RwkuBenchConfig, method: str, seed: int, target: int, base: str, store: StageStore,
              only: dict[str, Any] | None = None) -> Job:
    """One curves (target, method, seed): the method's curve at seed 0, or (``only``) its selected point at
    another seed."""
    stage = f"t{target}/{method}-seed{seed}"
    tcfg = _train_config(cfg, method, seed, cfg.max_steps or -1)
    recipe = common.recipe_key(tcfg)

    def run() -> dict[str, Any]:
        forget, retain, info = method_data(cfg, method, target, base, cfg.out, seed)
        points, res = curves.method_curve(store, stage, base, forget, retain, tcfg, cfg.out / "work" / stage.replace("/", "-"),
                                          lambda m, tok: evaluate(m, tok, cfg, target), cfg.curve_points,
                                          method_class(method).default_alpha is not None, only, cfg.ulmr_alphas, recipe)
        return {"curve": points, "training": curves.training_record(res, info)}

    return Job(stage, method, seed, run, recipe)


def _before(cfg: RwkuBenchConfig, base: str, target: int):
    def run() -> dict[str, Any]:

        model, tok = load(base)
        return evaluate(model.eval(), tok, cfg, target)

    return run


# --------------------------------------------------------------------------- the bench
COLUMNS = [
    Column("Forget FB / QA / AA / All ↓", ("forget.FB", "forget.QA", "forget.AA", "forget.All")),
    Column("Neighbour FB / QA / All ↑", ("neighbor.FB", "neighbor.QA", "neighbor.All")),
    Column("MIA FM ↑ / RM", ("mia.FM", "mia.RM")),
    Column("Gen ↑", ("Gen",)),
    Column("Easy ↑", ("Easy",)),
    Column("Over-refusal ↓", ("over_refusal",)),
]


def stage_key(cfg: RwkuBenchConfig) -> str:
    """Stage results are valid for this model, data, caps, unlearning settings and probe rendering only (the
    equal-steps key is the one of the tables before the curves protocol: lr and epochs resolved)."""
    skip = ("targets", "methods", "seeds", "seed_methods", "out", "protocol", "curve_points", "ulmr_alphas", "allow_extrapolation",
            "curves_from")
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in skip}
    for option, default in (("retain_loss", None), ("anchor", "method")):  # defaults keep the keys of earlier runs
        if settings[option] == default:
            del settings[option]
    if cfg.protocol == "equal-steps":
        settings |= {"lr": cfg.lr or EQUAL_STEPS_LR, "epochs": cfg.epochs or EQUAL_STEPS_EPOCHS}
    else:
        settings |= {"protocol": cfg.protocol, "curve_points": cfg.curve_points}
        if cfg.ulmr_alphas != list(curves.ALPHAS):
            settings["ulmr_alphas"] = cfg.ulmr_alphas
    return common.settings_key(settings | {"rendering": RENDERING})


def before_key(cfg: RwkuBenchConfig) -> str:
    """The original model's evaluations depend on the model, data and evaluation settings only: runs that
    differ in their unlearning settings share them."""
    return common.settings_key({"model": cfg.model, "data": cfg.data, "limit": cfg.limit, "utility": cfg.utility,
                                "eval_batch_size": cfg.eval_batch_size, "rendering": RENDERING, "records": "per_item"})


def _befores(cfg: RwkuBenchConfig, base: str, timings: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The original model evaluated on every target (stages ``t<N>/before``, shared by runs with the same
    evaluation settings)."""
    store = StageStore(cfg.out / "stages" / f"before-{before_key(cfg)}")
    out = [store.run(f"t{t}/before", _before(cfg, base, t)) for t in cfg.targets]
    timings.update(store.timings)
    return out


def _notes(cfg: RwkuBenchConfig, before: Sequence[dict[str, Any]]) -> list[str]:
    subjects = [b["subject"] for b in before]
    n0 = before[0]["n"]
    return [
        f"model {cfg.model}; targets {', '.join(f'{t} ({s})' for t, s in zip(cfg.targets, subjects))}; every row is the mean over targets.",
        f"evaluation caps: --limit {cfg.limit or 'none'} per probe set / MIA set / MMLU (items of target {cfg.targets[0]}: "
        + ", ".join(f"{k} {v}" for k, v in n0.items()) + f"); utility {cfg.utility}.",
        f"GA/KL/NPO/GradDiff: positive texts as answers to '{BIO_PROMPT}'; DPO: same-id negative text preferred; ULMR: reject"
        f" questions + the original model's answers; KL/GradDiff/ULMR retain side: positive texts of {RETAIN_TARGETS} other targets.",
        "Probes: ROUGE-L recall x100; MIA: mean token NLL x100; Gen: MMLU 5-shot accuracy (%); Easy: built-in easy set (%);"
        " Over-refusal: % of neighbour probes answered with a refusal.",
    ]


def _timings(before_timings: Mapping[str, Any], store: StageStore, t0: float) -> dict[str, Any]:
    """Every stage's wall time (Before, then the store's) and this invocation's total."""
    return {**before_timings, **store.timings, "total, this invocation": {"seconds": round(time.time() - t0, 1), "reused": False}}


def _payload(cfg: RwkuBenchConfig, stages: str, timings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"benchmark": "rwku", "settings": cfg.model_dump(mode="json"), "stages": stages, "timings": dict(timings), **extra}


def run_rwku_bench(cfg: RwkuBenchConfig, show: bool = True) -> dict[str, Any]:
    """Run the protocol for every target (resuming from ``cfg.out``), average over targets, write the outputs."""
    t0 = time.time()
    for t in cfg.targets:
        _folder(cfg.data, t)  # fail early on a missing target
    if cfg.protocol == "equal-steps":
        return _equal_steps(cfg, cached_model_dir(cfg.model), StageStore(cfg.out / "stages" / stage_key(cfg)), t0, show)
    prior = curves.Prior.load(cfg.curves_from, cfg.model_dump(mode="json"))
    return _curves(cfg, cached_model_dir(cfg.model), StageStore(cfg.out / "stages" / stage_key(cfg)), t0, show, prior)


TITLE = "RWKU, {model}, targets {targets}"


def _equal_steps(cfg: RwkuBenchConfig, base: str, store: StageStore, t0: float, show: bool) -> dict[str, Any]:
    """Every method for the same optimizer steps at one lr; one row per method (mean over targets and seeds)."""
    steps = cfg.max_steps or equal_steps(cfg.limit_train, cfg.batch_size, cfg.grad_accum, cfg.epochs or EQUAL_STEPS_EPOCHS)
    before_timings: dict[str, Any] = {}
    befores = _befores(cfg, base, before_timings)
    jobs = [unlearn_job(cfg, m, s, t, base, steps, cfg.out) for t in cfg.targets for m in cfg.methods for s in range(cfg.seeds)]
    done = {"before": befores, **common.run_jobs(store, jobs)}  # label -> results in target-major order

    def per_seed(label: str, seeds: int) -> list[dict[str, Any]]:
        """One result per seed whose metrics are the mean over targets."""
        res = done[label]
        return [{"metrics": common.mean_metrics([res[i * seeds + s]["metrics"] for i in range(len(cfg.targets))])}
                for s in range(seeds)]

    rows = [common.aggregate("Before", "reference", per_seed("before", 1))]
    rows += common.method_rows(cfg.methods, lambda m: per_seed(m, cfg.seeds))
    notes = _notes(cfg, done["before"])
    notes.insert(2, f"protocol equal-steps: --limit-train {cfg.limit_train} items per method; {steps} optimizer steps for every method, "
                 f"lr {cfg.lr or EQUAL_STEPS_LR:g}, batch {cfg.batch_size} x {cfg.grad_accum}; ULMR alpha {cfg.alpha:g}, "
                 f"{common.ulmr_term(cfg.answer_weight, cfg.retain_loss)}; seeds {cfg.seeds}.")
    notes += common.dfr_notes(cfg.methods, done)
    payload = _payload(cfg, str(store.root), _timings(before_timings, store, t0), unlearning_steps=steps,
                       per_target={f"{label}": [r["metrics"] for r in res] for label, res in done.items()},
                       training={m: [r.get("training") for r in done[m]] for m in cfg.methods})
    scatter = Scatter("forget.All", "neighbor.All", "Forget All (ROUGE-L recall x100, lower = forgotten)",
                      "Neighbour All (higher = kept)", "RWKU: forget vs neighbour knowledge")
    title = TITLE.format(model=cfg.model, targets=", ".join(map(str, cfg.targets)))
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, title, notes, scatter, show)
    return {**payload, "rows": rows, "paths": paths}


# --------------------------------------------------------------------------- the curves protocol
def merge_targets(points: Sequence[dict[str, Any]], targets: Sequence[int]) -> dict[str, Any]:
    """One point of the bench from the same point of each target: per-item values keyed ``t<N>/...``, metrics
    the mean over targets, cost summed (steps: the first target's)."""
    cost = {"steps": points[0].get("cost", {}).get("steps"),
            **{k: sum(p.get("cost", {}).get(k) or 0 for p in points) for k in ("train_tokens", "train_seconds")}}
    return {"per_item": {f"t{t}/{k}": v for t, p in zip(targets, points) for k, v in p["per_item"].items()},
            "metrics": common.mean_metrics([p["metrics"] for p in points]), "point": points[0].get("point", {}),
            "per_target_points": [p.get("point", {}) for p in points], "cost": cost}


def targets_metrics(targets: Sequence[int]):
    """metrics_of for merged points: each target's metrics from its per-item values, averaged over targets."""
    def metrics_of(values: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
        per = [metrics_from_items({k.split("/", 1)[1]: v for k, v in values.items() if k.startswith(f"t{t}/")}) for t in targets]
        return common.mean_metrics(per)
    return metrics_of


def is_forget_group(group: str) -> bool:
    """Forget items (split into selection and report halves): the forget probes and the forget MIA texts."""
    name = group.split("/", 1)[-1]
    return name.startswith("forget_") or name == "mia_forget"


def _curves(cfg: RwkuBenchConfig, base: str, store: StageStore, t0: float, show: bool, prior: curves.Prior) -> dict[str, Any]:
    """Every method at its own defaults along its curve, per target (or its curve from ``prior``); points merged
    over targets; one point per method chosen by the rule on the selection half, reported on the report half."""
    T = len(cfg.targets)
    before_timings: dict[str, Any] = {}
    befores = _befores(cfg, base, before_timings)
    view = selection_view(cfg, befores)
    refs = before_reference(cfg, befores, view)
    prior.check_references(refs)
    recipes = {m: common.recipe_key(_train_config(cfg, m, 0, cfg.max_steps or -1)) for m in cfg.methods}  # seed 0's
    taken = {m: p for m in cfg.methods if (p := prior.take(m, recipes[m])) is not None}
    jobs = [curve_job(cfg, m, 0, t, base, store) for t in cfg.targets for m in cfg.methods if m not in taken]
    done = common.run_jobs(store, jobs)  # label -> results in target order
    methods: dict[str, dict[str, Any]] = {}
    for m in cfg.methods:
        if m in taken:
            summary, training = {"curve": taken[m]["curve"], "selected": taken[m]["selected"]}, taken[m]["training"]
        else:
            per_target = [r["curve"] for r in done[m]]
            merged = [merge_targets([c[i] for c in per_target], cfg.targets) for i in range(min(map(len, per_target)))]
            summary, training = curves.summarise(merged, view), [r["training"] for r in done[m]]
        if common.reruns_seeds(cfg.seeds, cfg.seed_methods, m):
            sel = summary["selected"]
            points = sel.get("per_target_points") or [sel["point"]] * T  # recorded since 2026-12-07; equal on equal-sized targets
            again = common.run_jobs(store, [curve_job(cfg, m, s, t, base, store, points[i])
                                            for s in range(1, cfg.seeds) for i, t in enumerate(cfg.targets)])[m]
            reruns = [merge_targets([again[(s - 1) * T + i]["curve"][0] for i in range(T)], cfg.targets) for s in range(1, cfg.seeds)]
            summary["selected"] = curves.seed_summary(sel, reruns, view)
        recipe = taken[m].get("recipe") if m in taken else recipes[m]
        methods[display_name(m)] = {"method": m, "recipe": recipe, **summary, "training": training}
    return write_curves(cfg, befores, methods, _timings(before_timings, store, t0), str(store.root), show, refs)


def selection_view(cfg: RwkuBenchConfig, befores: Sequence[dict[str, Any]]) -> curves.View:
    """The selection rule (thresholds from Before, the mean over targets) and how to read the merged points."""
    b = merge_targets(befores, cfg.targets)["metrics"]
    return curves.View(targets_metrics(cfg.targets), is_forget_group, rwku_rule(b["neighbor.All"], b.get("Easy")))


def before_reference(cfg: RwkuBenchConfig, befores: Sequence[dict[str, Any]],
                     view: curves.View | None = None) -> dict[str, dict[str, Any]]:
    """The reference row: Before merged over targets, its report-half metrics and intervals (``view``: the
    :func:`selection_view` of these Befores, computed when not given)."""
    return {"Before": curves.reference_summary(merge_targets(befores, cfg.targets), view or selection_view(cfg, befores))}


def write_curves(cfg: RwkuBenchConfig, befores: Sequence[dict[str, Any]], methods: Mapping[str, dict[str, Any]],
                 timings: Mapping[str, Any], stages: str, show: bool = True,
                 refs: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The curves protocol's outputs in ``cfg.out`` from the Before stages and each method's summary
    (``{"method", "curve", "selected", "training"}``, as :func:`_curves` builds them); ``refs`` as
    :func:`before_reference` gives them (computed when not given)."""
    view = selection_view(cfg, befores)
    refs = refs or before_reference(cfg, befores, view)
    rows = curves.curve_rows(refs, methods)
    notes = _notes(cfg, befores)
    notes[2:2] = [
        f"protocol curves: --limit-train {cfg.limit_train} items per method, each method at its own lr and epochs (training in "
        f"results.json), evaluated at {cfg.curve_points} points of one run per target; ULMR: one p_f at α "
        f"{', '.join(f'{a:g}' for a in cfg.ulmr_alphas)}, {common.ulmr_term(cfg.answer_weight, cfg.retain_loss)}.",
        f"selection rule: {view.rule.describe()}; chosen on half of each target's forget probes and forget MIA texts "
        f"(selection half), reported on the other half (report half; neighbour and utility sets whole); † = no point held utility. "
        + common.seeds_note(cfg.seeds, cfg.seed_methods),
    ]
    notes += common.dfr_notes(cfg.methods, {v["method"]: [{"training": t} for t in v["training"]] for v in methods.values()})
    payload = _payload(cfg, stages, timings, rule=view.rule.describe(), methods=dict(methods), references=refs)
    title = TITLE.format(model=cfg.model, targets=", ".join(map(str, cfg.targets)))
    plot = lambda path: curves.curve_png(path, methods, {n: r["metrics"] for n, r in refs.items()}, "neighbor.All", "forget.All",  # noqa: E731
                                         "Neighbour All (ROUGE-L recall x100, higher = kept)",
                                         "Forget All (ROUGE-L recall x100, report half, lower = forgotten)",
                                         f"RWKU targets {', '.join(map(str, cfg.targets))}: forgetting vs neighbour knowledge")
    extra = [curves.interval_table(title, refs, methods, COLUMNS)]
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, title, notes, plot, show, extra)
    return {**payload, "rows": rows, "paths": paths}
