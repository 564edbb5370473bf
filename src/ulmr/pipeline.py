"""The ULMR pipeline end to end: forget set → D_fr (rewrites + negatives) → SFT → α-average → save.

Each stage is a function the CLI's stage commands (``generate``, ``train``, ``merge``) reuse, and
:func:`unlearn` chains them. Work in progress (generation cache, training checkpoints) lives in a work
directory beside the output, ``.<out>.work``, so rerunning an interrupted command resumes; the output
directory appears in one rename when everything is done.
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
from typing import Any

import torch

from . import __version__
from .anchor import anchor_set
from .atomic import atomic_dir, write_json, write_jsonl
from .config import UnlearnConfig
from .data.records import QARecord, load_qa
from .errors import ConfigError
from .merge import average_into, check_alpha, scale_lora
from .methods.registry import method_class
from .models import cached_model_dir, load, resolve_model, save_model

log = logging.getLogger(__name__)


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
def make_backend(cfg: UnlearnConfig, model, tokenizer):
    """The generator of the rewrites and negative responses: the model itself by default."""
    from .generate.backends import LocalBackend, OpenAIBackend

    if cfg.backend == "openai":
        return OpenAIBackend(base_url=cfg.openai_base_url, model=cfg.openai_model, api_key_env=cfg.api_key_env)
    dtype = getattr(torch, cfg.generator_dtype) if cfg.generator_dtype else None
    if cfg.generator and cfg.generator != cfg.model:
        gen_model, gen_tok = load(cfg.generator, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                                  dtype=dtype or torch.float32)
        return LocalBackend(gen_model, gen_tok)
    if dtype is not None and dtype != model.dtype:
        # A copy: casting the model itself down and back would change the weights that get trained.
        return LocalBackend(copy.deepcopy(model).to(dtype), tokenizer)
    return LocalBackend(model, tokenizer)


def generation_config(cfg: UnlearnConfig):
    from .generate.restructure import GenerateConfig

    return GenerateConfig(
        num_rewrites=cfg.num_rewrites,
        mode=cfg.mode,
        rewrite_prompt=cfg.rewrite_prompt,
        negative_prompt=cfg.negative_prompt,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
        max_tries=cfg.max_tries,
        seed=cfg.seed,
    )


def run_generation(cfg: UnlearnConfig, records: list[QARecord], model, tokenizer, work: Path):
    """Build D_fr (and the held-out probe rewrites), resuming from ``work/generation_cache.jsonl``."""
    from .generate.restructure import restructure

    backend = make_backend(cfg, model, tokenizer)
    return restructure(records, backend, generation_config(cfg), work / "generation_cache.jsonl")


def load_retain(cfg: UnlearnConfig, model, tokenizer, model_dir: str, n_rows: int | None = None) -> tuple[list[QARecord] | None, str]:
    """The retain set: the user's, else the built-in anchor answered by the base model, else none.

    One retain row is drawn per training row and epoch, so the anchor needs at most ``n_rows`` questions
    (training rows x epochs)."""
    if cfg.retain:
        return load_qa(cfg.retain, cfg.question_field, cfg.answer_field), "user"
    if cfg.anchor == "builtin" and method_class(cfg.method).retain != "never":
        log.info("no --retain given: using the built-in anchor set (general questions with the base model's own answers)")
        return anchor_set(model, tokenizer, model_dir, n=n_rows), "builtin-anchor"
    return None, "none"


def train_config(cfg: UnlearnConfig):
    from .train import TrainConfig

    return TrainConfig(
        method=cfg.method,
        epochs=cfg.epochs,
        lr=cfg.lr,
        retain_weight=cfg.retain_weight,
        answer_weight=cfg.answer_weight,
        answer_source=cfg.answer_source,
        beta=cfg.beta,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        max_steps=cfg.max_steps,
        max_length=cfg.max_length,
        group_by_length=cfg.group_by_length,
        seed=cfg.seed,
        lora=cfg.lora,
        lora_r=cfg.lora_r,
        save_steps=cfg.checkpoint_steps,
    )


def base_weights_dir(spec: str) -> str:
    """A local directory with the base model's safetensors (hub models: their local snapshot)."""
    path = cached_model_dir(spec)
    if Path(path).is_dir():
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, allow_patterns=["*.safetensors", "*.json"])


def apply_average(model, cfg_alpha: float, base_dir: str, lora: bool):
    """p_u = α·p_f + (1−α)·p_θ, in place (full weights) or by scaling the LoRA adapter."""
    if lora:
        return scale_lora(model, cfg_alpha)
    return average_into(model, base_dir, cfg_alpha)


def choose_alpha(cfg: UnlearnConfig, model, tokenizer, base_dir: str, probes: list[dict],
                 retain: list[QARecord]) -> tuple[float, dict]:
    """``--alpha auto``: sweep α on held-out probes (never training or test items) and pick by the rule
    in :func:`ulmr.sweep.select_alpha`; returns α and the record (curve, rule) for ``ulmr_run.json``."""
    from .sweep import AUTO_ALPHAS, select_alpha, sweep

    probe_items = load_qa(cfg.probe) if cfg.probe else [QARecord(p["question"], p["answer"]) for p in probes]
    if not probe_items:
        raise ConfigError("--alpha auto: no held-out probe items (generation made none; pass --probe)")
    retain_items = list(retain)[:32]
    points = sweep(model, tokenizer, None if cfg.lora else base_dir, AUTO_ALPHAS, probe_items, retain_items)
    chosen, rule = select_alpha(points)
    log.info("--alpha auto selected alpha = %.2f", chosen)
    return chosen, {"chosen": chosen, "rule": rule, "curve": [p.as_dict() for p in points],
                    "probe": cfg.probe or "generated held-out rewrites"}


# --------------------------------------------------------------------------- the whole run
def _check_output(cfg: UnlearnConfig) -> None:
    if cfg.out.exists() and not cfg.overwrite:
        raise ConfigError(f"output directory {cfg.out} exists; pass --overwrite to replace it")


def unlearn(cfg: UnlearnConfig, generate_dfr: bool = True, average: bool = True) -> RunResult:
    """Run generation (methods that train on D_fr), training, averaging and saving; returns where the model is.

    ``generate_dfr=False`` trains on the forget file as given (an existing D_fr); ``average=False``
    saves p_f itself (the ``ulmr train`` stage).
    """
    t0 = time.time()
    timings: dict[str, float] = {}
    _check_output(cfg)
    method = method_class(cfg.method)
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

    start_spec = cfg.base if (method.starts_from_base and cfg.base) else cfg.model
    resolve_model(start_spec)
    t = time.time()
    model, tokenizer = load(start_spec, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
    model_dir = cached_model_dir(start_spec)
    timings["load"] = time.time() - t

    gen_stats: dict[str, Any] = {}
    rows: list[dict] = []
    probes: list[dict] = []
    if method.generates_dfr and generate_dfr:
        t = time.time()
        result = run_generation(cfg, records, model, tokenizer, work)
        rows, probes, gen_stats = result.rows, result.probes, result.stats
        write_jsonl(work / "d_fr.jsonl", rows)
        write_jsonl(work / "probe.jsonl", probes)
        timings["generation"] = time.time() - t
        forget_items: list[Any] = rows
    else:
        forget_items = records

    t = time.time()
    tcfg = train_config(cfg)
    from .train import planned_epochs

    retain, retain_source = load_retain(cfg, model, tokenizer, model_dir,
                                        n_rows=len(forget_items) * planned_epochs(tcfg, len(forget_items)))
    # --alpha auto measures retain knowledge against the *base* model's answers: take them before training.
    auto_retain = (retain or anchor_set(model, tokenizer, model_dir)) if alpha == "auto" else []
    timings["retain_anchor"] = time.time() - t

    from .train import train_unlearn

    t = time.time()
    trained = train_unlearn(model, tokenizer, forget_items, retain, tcfg, work, resume=not cfg.fresh)
    model = trained.model
    timings["training"] = time.time() - t

    t = time.time()
    if cfg.keep_finetuned:
        keep = work / "finetuned"
        shutil.rmtree(keep, ignore_errors=True)
        save_model(model, tokenizer, keep)
    auto_record = None
    if alpha == "auto":
        alpha, auto_record = choose_alpha(cfg, model, tokenizer, base_weights_dir(start_spec), probes, auto_retain)
    if isinstance(alpha, float):
        model = apply_average(model, alpha, base_weights_dir(start_spec), cfg.lora)
    elif cfg.lora:
        model = model.merge_and_unload()
    timings["averaging"] = time.time() - t

    record = {
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
            "train_rows": len(forget_items),
            "retain_rows": len(retain) if retain else 0,
            **{k: v for k, v in gen_stats.items()},
        },
        "alpha_auto": auto_record,
        "training": {"steps": trained.steps, "lr": trained.lr, "seconds": trained.seconds, "train_tokens": trained.train_tokens,
                     "loss_weights": trained.loss_weights, "lora": cfg.lora, "config": tcfg.model_dump(mode="json")},
    }
    if not trained.is_main_process:
        return RunResult(cfg.out, record)  # under accelerate launch only the main process writes
    t = time.time()
    with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        save_model(model, tokenizer, tmp)
        if rows:
            write_jsonl(tmp / "d_fr.jsonl", rows)
            write_jsonl(tmp / "probe.jsonl", probes)
        if cfg.keep_finetuned:
            shutil.move(str(work / "finetuned"), str(tmp / "finetuned"))
        timings["saving"] = time.time() - t
        timings["total"] = time.time() - t0
        record["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        write_json(tmp / "ulmr_run.json", record)
    shutil.rmtree(work, ignore_errors=True)
    if cfg.verify:
        from .verify.hook import run_verify_after_unlearn

        record["verify"] = run_verify_after_unlearn(cfg.out, cfg)
    return RunResult(cfg.out, record)
