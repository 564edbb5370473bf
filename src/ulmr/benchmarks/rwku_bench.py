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
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import Alpha, BatchSize, Count, Epochs, LearningRate, MaxLength, NewTokens, TrainConfig, Weight
from ..data.records import QARecord, read_jsonl
from ..errors import ConfigError, DataError
from ..methods.registry import method_class, method_names
from . import common
from ..training.data import equal_steps
from .common import Column, Job, Scatter, StageStore
from ..data.rwku import target_dir
from ..refusal import refusal_rate
from ..models import load
from ..models import cached_model_dir
from ..inference import generate
from ..eval.rwku import RENDERING, evaluate_rwku
from ..data.chat import ChatFormat

log = logging.getLogger("ulmr.bench")

BENCH = "rwku"  # the name methods list in their ``benchmarks`` and ``forget_only_in``
BIO_PROMPT = "Write a short biography of {subject}."
RETAIN_TARGETS = 3
# Laptop defaults (the 3-target bench in < 2.5 h on 2 CPU cores): 30 items per probe set / MIA set / MMLU, one
# epoch over --limit-train texts (8 steps at batch 4: ~400-token biographies train at ~100 tokens/s), one lr for
# every method, 5e-5 (1e-5, RWKU's 8B setting, barely moves a 135M model in 8 steps). GPU users pass --limit 0.
LAPTOP_LIMIT = 30


class RwkuBenchConfig(BaseModel):
    """Options of ``ulmr bench rwku``."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    data: str
    targets: list[int] = Field(default_factory=lambda: [111, 106, 31])
    methods: list[str] = Field(default_factory=lambda: method_names(BENCH))
    limit_train: Count = 32
    limit: Optional[int] = Field(LAPTOP_LIMIT, ge=0, description="items per probe set / MIA set / MMLU; 0 or None: all")
    utility: Literal["easy", "mmlu", "both"] = "both"
    seeds: Count = 1
    out: Path = Path("runs/bench/rwku")
    lr: LearningRate = 5e-5
    epochs: Epochs = 1.0
    batch_size: BatchSize = 4
    grad_accum: Count = 1
    max_steps: Optional[Count] = Field(None, description="unlearning steps for every method (default: epochs over limit_train items)")
    alpha: Alpha = 0.5
    answer_weight: Optional[Weight] = Field(
        None, description="ULMR's answer term γ (default: ULMR's, 0.03; 0 = the paper's plain SFT, as in the tables before 2026-11-29)")
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

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return common.check_methods(v, method_names(BENCH))


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
    return {"metrics": flat_metrics(res), "n": res["n"], "subject": res["subject"], "forget_examples": examples}


def _train_config(cfg: RwkuBenchConfig, method: str, seed: int, steps: int) -> TrainConfig:
    return TrainConfig(method=method, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                       max_steps=steps, seed=seed, max_length=cfg.max_length, lora=cfg.lora, checkpoint_steps=0, keep_checkpoints=False,
                       answer_weight=cfg.answer_weight if method_class(method).uses_original else None)


def unlearn_job(cfg: RwkuBenchConfig, method: str, seed: int, target: int, base: str, steps: int, out: Path):
    """``run()`` of one (target, method, seed): build the method's data, train from the original model, evaluate."""
    cls = method_class(method)
    uses_retain = cls.retain != "never" and BENCH not in cls.forget_only_in  # RWKU's GA, NPO and DPO: forget side only

    def run() -> dict[str, Any]:

        folder = _folder(cfg.data, target)
        subject, rows = forget_texts(folder, cfg.limit_train)
        retain = retain_items(cfg.data, target, cfg.limit_train) if uses_retain else None
        info: dict[str, Any] = {}
        forget: list[Any]
        if cls.generates_dfr:
            model, tok = load(base)
            records = reject_records(folder, cfg.limit_train, model, tok, cfg.answer_tokens, cfg.eval_batch_size)
            forget, info = common.dfr_rows(records, model, tok, out / "work" / f"t{target}-ulmr-generation",
                                           cfg.gen_max_new_tokens, cfg.eval_batch_size)
            del model
        elif cls.needs_preferred:
            forget = dpo_items(folder, subject, rows)
        else:
            forget = text_items(subject, rows)
        work = out / "work" / f"t{target}-{method}-seed{seed}"
        model, tok, res = common.train_model(base, forget, retain, _train_config(cfg, method, seed, steps), work,
                                             alpha=cfg.alpha if cls.default_alpha is not None else None)
        result = evaluate(model, tok, cfg, target)
        result["training"] = {"steps": res.steps, "seconds": round(res.seconds, 1), "train_tokens": res.train_tokens,
                              "forget_items": len(forget), "retain_items": len(retain or []), **info}
        return result

    return run


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
    """Stage results are valid for this model, data, caps, unlearning settings and probe rendering only."""
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("targets", "methods", "seeds", "out")}
    return common.settings_key(settings | {"rendering": RENDERING})


def run_rwku_bench(cfg: RwkuBenchConfig, show: bool = True) -> dict[str, Any]:
    """Run the protocol for every target (resuming from ``cfg.out``), average over targets, write the outputs."""
    import time


    t0 = time.time()
    for t in cfg.targets:
        _folder(cfg.data, t)  # fail early on a missing target
    base = cached_model_dir(cfg.model)
    store = StageStore(cfg.out / "stages" / stage_key(cfg))
    steps = cfg.max_steps or equal_steps(cfg.limit_train, cfg.batch_size, cfg.grad_accum, cfg.epochs)
    jobs: list[Job] = []
    for t in cfg.targets:
        jobs.append(Job(f"t{t}/before", "before", 0, _before(cfg, base, t)))
        jobs += [Job(f"t{t}/{m}-seed{s}", m, s, unlearn_job(cfg, m, s, t, base, steps, cfg.out))
                 for m in cfg.methods for s in range(cfg.seeds)]
    done = common.run_jobs(store, jobs)  # label -> results in target-major order

    def per_seed(label: str, seeds: int) -> list[dict[str, Any]]:
        """One result per seed whose metrics are the mean over targets."""
        res = done[label]
        return [{"metrics": common.mean_metrics([res[i * seeds + s]["metrics"] for i in range(len(cfg.targets))])}
                for s in range(seeds)]

    rows = [common.aggregate("Before", "reference", per_seed("before", 1))]
    rows += common.method_rows(cfg.methods, lambda m: per_seed(m, cfg.seeds))
    subjects = [done["before"][i]["subject"] for i in range(len(cfg.targets))]
    n0 = done["before"][0]["n"]
    notes = [
        f"model {cfg.model}; targets {', '.join(f'{t} ({s})' for t, s in zip(cfg.targets, subjects))}; every row is the mean over targets.",
        f"evaluation caps: --limit {cfg.limit or 'none'} per probe set / MIA set / MMLU (items of target {cfg.targets[0]}: "
        + ", ".join(f"{k} {v}" for k, v in n0.items()) + f"); utility {cfg.utility}.",
        f"training: --limit-train {cfg.limit_train} items per method; {steps} optimizer steps for every method, lr {cfg.lr:g},"
        f" batch {cfg.batch_size} x {cfg.grad_accum}; ULMR alpha {cfg.alpha:g}, {common.ulmr_term(cfg.answer_weight)}; seeds {cfg.seeds}.",
        f"GA/KL/NPO: positive texts as answers to '{BIO_PROMPT}'; DPO: same-id negative text preferred; ULMR: reject"
        f" questions + the original model's answers; KL/ULMR retain side: positive texts of {RETAIN_TARGETS} other targets.",
        "Probes: ROUGE-L recall x100; MIA: mean token NLL x100; Gen: MMLU 5-shot accuracy (%); Easy: built-in easy set (%);"
        " Over-refusal: % of neighbour probes answered with a refusal.",
    ]
    notes += common.dfr_notes(cfg.methods, done)
    timings = dict(store.timings)
    timings["total, this invocation"] = {"seconds": round(time.time() - t0, 1), "reused": False}
    payload = {"benchmark": "rwku", "settings": cfg.model_dump(mode="json"), "unlearning_steps": steps, "stages": str(store.root),
               "timings": timings, "per_target": {f"{label}": [r["metrics"] for r in res] for label, res in done.items()},
               "training": {m: [r.get("training") for r in done[m]] for m in cfg.methods}}
    scatter = Scatter("forget.All", "neighbor.All", "Forget All (ROUGE-L recall x100, lower = forgotten)",
                      "Neighbour All (higher = kept)", "RWKU: forget vs neighbour knowledge")
    title = f"RWKU, {cfg.model}, targets {', '.join(map(str, cfg.targets))}"
    paths = common.write_outputs(cfg.out, payload, rows, COLUMNS, title, notes, scatter, show)
    return {**payload, "rows": rows, "paths": paths}
