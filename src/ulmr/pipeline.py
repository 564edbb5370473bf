"""The ULMR pipeline end to end: forget set → D_fr (rewrites + negatives) → SFT → α-average → save.

Each stage is a function taking its own stage's options (:mod:`ulmr.config`): :func:`make_backend` +
:func:`run_generation` (``GenerateConfig``), :func:`ulmr.train.train_unlearn` (``TrainConfig``) and
:func:`finish_weights` (α). :func:`unlearn` chains them; the CLI's stage commands (``generate``, ``train``,
``merge``) and the benchmarks (:mod:`ulmr.benchmarks.common`) call the same functions. Work in progress (generation cache, training checkpoints) lives in a work
directory beside the output, ``.<out>.work``, so rerunning an interrupted command resumes; the output
directory appears in one rename when everything is done. The output is a plain model directory to load or
share (weights, tokenizer, a model card, ``ulmr_run.json`` with only hashes and counts of the forget set);
the run's records (D_fr, probes, the full run record, ``--verify`` reports) go to the sibling ``<out>.records``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .anchor import anchor_set, without_shared_entities
from .atomic import atomic_dir, write_json, write_jsonl
from .card import save_card, unlearn_card
from .config import BackendConfig, GenerateConfig, TrainConfig, UnlearnConfig
from .data.records import QARecord, load_qa
from .errors import ConfigError
from .generate.backends import Backend, LocalBackend, OpenAIBackend
from .generate.restructure import RestructureResult, restructure
from .merge import average_model, check_alpha
from .methods.base import Method
from .methods.registry import method_class
from .models import base_weights_dir, cached_model_dir, load, resolve_model, save_model
from .paths import records_dir_for
from .sweep import AUTO_ALPHAS, select_alpha, sweep
from .train import TrainResult, planned_epochs, train_unlearn
from .verify.hook import RUN_RECORD, run_verify_after_unlearn
from .verify.paraphrase import PROBE_FILE
from .version import __version__

log = logging.getLogger(__name__)

CARD_EXAMPLES = 3  # forget questions on the card with --card-include-examples


@dataclass
class RunResult:
    """What :func:`unlearn` produced: the output directory and the run record written there."""

    out: Path
    record: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of an input file (None for hub ids)."""
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def work_dir_for(out: Path) -> Path:
    """The resumable work directory of an output directory."""
    return out.parent / f".{out.name}.work"


def versions() -> dict[str, str]:
    import peft
    import transformers

    return dict(ulmr=__version__, torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                python=platform.python_version())


# --------------------------------------------------------------------------- stages
def make_backend(cfg: BackendConfig, model, tokenizer, model_spec: str | None = None, trust_remote_code: bool = False,
                 allow_pickle: bool = False) -> Backend:
    """The generator of the rewrites and negative responses: ``model`` itself (the model ``model_spec`` names)
    by default, else a separate ``--generator``, a cast copy (``--generator-dtype``) or an OpenAI-compatible server."""
    if cfg.backend == "openai":
        return OpenAIBackend(base_url=cfg.openai_base_url, model=cfg.openai_model, api_key_env=cfg.api_key_env)
    dtype = getattr(torch, cfg.generator_dtype) if cfg.generator_dtype else None
    if cfg.generator and cfg.generator != model_spec:
        gen_model, gen_tok = load(cfg.generator, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                  dtype=dtype or torch.float32)
        return LocalBackend(gen_model, gen_tok)
    if dtype is not None and dtype != model.dtype:
        # A copy: casting the model itself down and back would change the weights that get trained.
        return LocalBackend(copy.deepcopy(model).to(dtype), tokenizer)
    return LocalBackend(model, tokenizer)


def run_generation(cfg: GenerateConfig, records: list[QARecord], backend: Backend, work: Path) -> RestructureResult:
    """The generation stage: D_fr (and the held-out probe rewrites) from ``records`` through ``backend``,
    resuming from ``work/generation_cache.jsonl``."""
    work.mkdir(parents=True, exist_ok=True)
    return restructure(records, backend, cfg, work / "generation_cache.jsonl")


def load_retain(cfg: UnlearnConfig, model, tokenizer, model_dir: str, n_rows: int | None = None,
                forget: Sequence[QARecord] = ()) -> tuple[list[QARecord] | None, str]:
    """The retain set: the user's, the built-in anchor answered by the base model (methods that take a retain
    set, when no --retain is given; beside it for methods whose recipe says so, ``anchor_with_retain``) without
    the questions that name what ``forget`` names, or none.

    One retain row is drawn per training row and epoch, so the anchor needs at most ``n_rows`` questions
    (training rows x epochs)."""
    method = method_class(cfg.method)
    user = load_qa(cfg.retain, cfg.question_field, cfg.answer_field) if cfg.retain else None
    if cfg.anchor != "builtin" or method.retain == "never" or (user and not method.anchor_with_retain):
        return user, "user" if user else "none"
    if not user:
        log.info("no --retain given: using the built-in anchor set (general questions with the base model's own answers)")
    anchor = without_shared_entities(anchor_set(model, tokenizer, model_dir, n=n_rows), (f"{r.question} {r.answer}" for r in forget))
    return (user + anchor, "user+builtin-anchor") if user else (anchor, "builtin-anchor")


def finish_weights(model, alpha: float | None, start_spec: str, lora: bool):
    """The averaging stage: p_u = α·p_f + (1−α)·p_θ with ``alpha`` (p_θ: the weights of ``start_spec``); without
    ``alpha`` the trained model itself, its LoRA adapter merged into the weights."""
    if alpha is not None:
        return average_model(model, alpha, base_weights_dir(start_spec), lora)
    return model.merge_and_unload() if lora else model


def choose_alpha(cfg: UnlearnConfig, model, tokenizer, base_dir: str, probes: list[dict],
                 retain: list[QARecord]) -> tuple[float, dict]:
    """``--alpha auto``: sweep α on held-out probes (never training or test items) and pick by the rule
    in :func:`ulmr.sweep.select_alpha`; returns α and the record (curve, rule) for ``ulmr_run.json``."""

    probe_items = load_qa(cfg.probe) if cfg.probe else [QARecord(p["question"], p["answer"]) for p in probes]
    if not probe_items:
        raise ConfigError("--alpha auto: no held-out probe items (generation made none; pass --probe)")
    retain_items = list(retain)[:32]
    points = sweep(model, tokenizer, base_dir, AUTO_ALPHAS, probe_items, retain_items)
    chosen, rule = select_alpha(points)
    log.info("--alpha auto selected alpha = %.2f", chosen)
    return chosen, {"chosen": chosen, "rule": rule, "curve": [p.as_dict() for p in points],
                    "probe": cfg.probe or "generated held-out rewrites"}


# --------------------------------------------------------------------------- the whole run
def _prepare(cfg: UnlearnConfig, method: type[Method], generate_dfr: bool, average: bool) -> tuple[float | str | None, list[QARecord], Path]:
    """Checks that need no model, in order; returns (α or 'auto' or None, the forget records, the work directory)."""
    if cfg.out.exists() and not cfg.overwrite:
        raise ConfigError(f"output directory {cfg.out} exists; pass --overwrite to replace it")
    alpha = cfg.effective_alpha() if average else None
    if alpha == "auto" and not method.generates_dfr and not cfg.probe:
        raise ConfigError("--alpha auto needs held-out probe items: pass --probe QA_FILE (ulmr generates them itself)")
    if isinstance(alpha, float):
        check_alpha(alpha, cfg.allow_extrapolation)
    records = load_qa(cfg.forget, cfg.question_field, cfg.answer_field)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and method.generates_dfr and generate_dfr:
        raise ConfigError("under accelerate launch, build D_fr first with `ulmr generate`, then run `ulmr train --data D_FR.jsonl`")
    work = work_dir_for(cfg.out)
    if cfg.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return alpha, records, work


def _average(cfg: UnlearnConfig, model, tokenizer, alpha: float | str | None, start_spec: str, work: Path,
             probes: list[dict], auto_retain: list[QARecord]) -> tuple[Any, float | None, dict | None]:
    """Keep p_f when asked, resolve ``--alpha auto``, then :func:`finish_weights`; returns (model, α, auto record)."""
    if cfg.keep_finetuned:
        keep = work / "finetuned"
        shutil.rmtree(keep, ignore_errors=True)
        save_model(model, tokenizer, keep)
    auto_record = None
    if alpha == "auto":
        alpha, auto_record = choose_alpha(cfg, model, tokenizer, base_weights_dir(start_spec), probes, auto_retain)
    alpha = alpha if isinstance(alpha, float) else None
    return finish_weights(model, alpha, start_spec, cfg.lora), alpha, auto_record


def _run_record(cfg: UnlearnConfig, tcfg: TrainConfig, alpha: float | None, records: list[QARecord], gen: RestructureResult | None,
                train_rows: int, retain: list[QARecord] | None, retain_source: str, start_spec: str, model_dir: str,
                auto_record: dict | None, trained: TrainResult) -> dict[str, Any]:
    """The content of ``ulmr_run.json`` (timings are added when the model is saved)."""
    rows, probes, gen_stats = (gen.rows, gen.probes, gen.stats) if gen else ([], [], {})
    return {
        "ulmr_run_version": 1,
        "settings": cfg.model_dump(mode="json"),
        "alpha": alpha,
        "versions": versions(),
        "inputs": {
            "forget": {"path": cfg.forget, "sha256": file_sha256(cfg.forget), "items": len(records)},
            "retain": {"path": cfg.retain, "sha256": file_sha256(cfg.retain) if cfg.retain else None,
                       "items": len(retain) if retain else 0, "source": retain_source},
            "model": {"spec": cfg.model, "start": start_spec, "dir": model_dir},
        },
        "counts": {
            "forget_items": len(records),
            "d_fr_rows": len(rows),
            "probe_rows": len(probes),
            "train_rows": train_rows,
            "retain_rows": len(retain) if retain else 0,
            **{k: v for k, v in gen_stats.items()},
        },
        "alpha_auto": auto_record,
        "training": {"steps": trained.steps, "lr": trained.lr, "seconds": trained.seconds, "train_tokens": trained.train_tokens,
                     "loss_weights": trained.loss_weights, "lora": cfg.lora, "config": tcfg.model_dump(mode="json")},
    }


def public_record(record: dict[str, Any], records_name: str) -> dict[str, Any]:
    """The run record kept in the model directory: the full one less every path or content of the forget set
    (its file's SHA-256 and item count stay) and of the held-out probe file; the full one is in ``records_name``."""
    pub = copy.deepcopy(record)
    pub["records"] = records_name
    for key in ("forget", "probe"):
        if pub.get("settings", {}).get(key) is not None:
            pub["settings"][key] = None
    forget = pub.get("inputs", {}).get("forget") or {}
    pub.setdefault("inputs", {})["forget"] = {"sha256": forget.get("sha256"), "items": forget.get("items")}
    if pub.get("alpha_auto") and record["settings"].get("probe"):
        pub["alpha_auto"]["probe"] = f"held-out QA file (path in {records_name}/{RUN_RECORD})"
    return pub


def _card(cfg: UnlearnConfig, record: dict[str, Any], records: list[QARecord], verify: dict | None = None):
    """The model card of this run (forget questions only with ``--card-include-examples``)."""
    examples = [r.question for r in records[:CARD_EXAMPLES]] if cfg.card_include_examples else None
    return unlearn_card(cfg.out.name, record, examples, verify)


def _save(cfg: UnlearnConfig, model, tokenizer, gen: RestructureResult | None, work: Path, record: dict[str, Any],
          timings: dict[str, float], t0: float, records: list[QARecord]) -> None:
    """Write the run records (``OUT.records``: D_fr, probes, the full ulmr_run.json), then the model directory
    (model, card, the public ulmr_run.json, p_f when kept), each in one rename. A kill between the two
    renames leaves the work directory, so a rerun resumes and replaces the records."""
    t = time.time()
    rec_dir = records_dir_for(cfg.out)
    with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        save_model(model, tokenizer, tmp)
        if cfg.keep_finetuned:
            shutil.move(str(work / "finetuned"), str(tmp / "finetuned"))
        timings["saving"] = time.time() - t
        timings["total"] = time.time() - t0
        record["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        write_json(tmp / RUN_RECORD, public_record(record, rec_dir.name))
        save_card(_card(cfg, record, records), tmp)
        # Replaces the records of the output being replaced (--overwrite) or of an interrupted save of this output.
        with atomic_dir(rec_dir, overwrite=True) as rtmp:
            if gen and gen.rows:
                write_jsonl(rtmp / "d_fr.jsonl", gen.rows)
                write_jsonl(rtmp / PROBE_FILE, gen.probes)
            write_json(rtmp / RUN_RECORD, record)
    shutil.rmtree(work, ignore_errors=True)


def unlearn(cfg: UnlearnConfig, generate_dfr: bool = True, average: bool = True) -> RunResult:
    """Run generation (methods that train on D_fr), training, averaging and saving; returns where the model is.

    ``generate_dfr=False`` trains on the forget file as given (an existing D_fr); ``average=False``
    saves p_f itself (the ``ulmr train`` stage).
    """
    t0 = time.time()
    timings: dict[str, float] = {}
    method = method_class(cfg.method)
    alpha, records, work = _prepare(cfg, method, generate_dfr, average)

    start_spec = cfg.base if (method.starts_from_base and cfg.base) else cfg.model
    resolve_model(start_spec)
    t = time.time()
    model, tokenizer = load(start_spec, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
    model_dir = cached_model_dir(start_spec)
    timings["load"] = time.time() - t

    gen = None
    if method.generates_dfr and generate_dfr:
        t = time.time()
        backend = make_backend(cfg.stage(BackendConfig), model, tokenizer, cfg.model, cfg.trust_remote_code, cfg.allow_pickle)
        gen = run_generation(cfg.stage(GenerateConfig), records, backend, work)
        write_jsonl(work / "d_fr.jsonl", gen.rows)
        write_jsonl(work / "probe.jsonl", gen.probes)
        timings["generation"] = time.time() - t
    forget_items: list[Any] = gen.rows if gen else records

    t = time.time()
    tcfg = cfg.stage(TrainConfig)
    retain, retain_source = load_retain(cfg, model, tokenizer, model_dir,
                                        n_rows=len(forget_items) * planned_epochs(tcfg, len(forget_items)), forget=records)
    # --alpha auto measures retain knowledge against the *base* model's answers: take them before training.
    auto_retain = (retain or anchor_set(model, tokenizer, model_dir)) if alpha == "auto" else []
    timings["retain_anchor"] = time.time() - t

    t = time.time()
    trained = train_unlearn(model, tokenizer, forget_items, retain, tcfg, work, resume=not cfg.fresh)
    timings["training"] = time.time() - t

    t = time.time()
    model, alpha, auto_record = _average(cfg, trained.model, tokenizer, alpha, start_spec, work,
                                         gen.probes if gen else [], auto_retain)
    timings["averaging"] = time.time() - t

    record = _run_record(cfg, tcfg, alpha, records, gen, len(forget_items), retain, retain_source, start_spec, model_dir,
                         auto_record, trained)
    if not trained.is_main_process:
        return RunResult(cfg.out, record)  # under accelerate launch only the main process writes
    _save(cfg, model, tokenizer, gen, work, record, timings, t0, records)
    if cfg.verify:
        record["verify"] = run_verify_after_unlearn(cfg.out, cfg)
        save_card(_card(cfg, record, records, record["verify"]), cfg.out)
    return RunResult(cfg.out, record)
