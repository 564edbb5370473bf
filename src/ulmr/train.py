"""Unlearning training: one Hugging Face Trainer, the loss chosen by name from :mod:`ulmr.methods`.

``train_unlearn`` encodes the forget (and retain) items, pairs one retain row with each forget row,
draws DPO's refusals, precomputes reference log-probs where a method needs only those, and runs
:class:`~ulmr.training.trainer.UnlearnTrainer`. Under ``accelerate launch`` the same call runs DDP,
FSDP or DeepSpeed. Checkpoints go to ``output_dir/checkpoints``; an interrupted run resumes from the
last one and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback

from .config import TrainConfig
from .data.chat import ChatFormat
from .data.records import QARecord
from .errors import ConfigError
from .methods.refusals import load_refusals
from .methods.registry import get_method, method_class
from .progress import verbose
from .training.answer_text import choose_answer_texts, model_answers
from .training.checkpoints import drop_incomplete_checkpoints, last_complete_checkpoint
from .training.data import PartCollator, RowDataset, add_original_answers, as_records, build_rows, match_retain_lengths, retain_schedule
from .training.probe import EpochProbe
from .training.reference import ModelReference, frozen_copy, precompute_ref_logps
from .training.trainer import RetainEpochCallback, TrainProgress, UnlearnTrainer

log = logging.getLogger(__name__)

Items = Sequence[QARecord | Mapping[str, Any]]


@dataclass
class TrainResult:
    """The trained model (a PeftModel with ``lora``) and what the run cost."""

    model: Any
    steps: int
    seconds: float
    train_tokens: int  # non-padding tokens through the model in this call (all processes)
    log_history: list[dict] = field(default_factory=list)
    lora: bool = False
    answer_tokens: int = 0
    method: str = ""
    best_epoch: float | None = None
    is_main_process: bool = True
    lr: float | None = None  # the learning rate used (a method default when the config had none)
    loss_weights: dict[str, Any] = field(default_factory=dict)  # β, λ, γ as used, and whether γ's term ran


def _set_threads(cfg: TrainConfig) -> None:
    if torch.cuda.is_available():
        return
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def resolved_epochs(cfg: TrainConfig) -> float:
    """``cfg.epochs``, or the method's default when unset."""
    return cfg.epochs if cfg.epochs is not None else method_class(cfg.method).epochs


def planned_epochs(cfg: TrainConfig, n_rows: int) -> int:
    """Whole epochs the run will start (from ``max_steps`` when set; one process assumed)."""
    epochs = resolved_epochs(cfg)
    if cfg.max_steps > 0:
        per_epoch = max(1, math.ceil(n_rows / (cfg.batch_size * cfg.grad_accum)))
        return math.ceil(cfg.max_steps / per_epoch)
    return math.ceil(epochs)


def _wrap_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        return model
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def _training_args(cfg: TrainConfig, ckpt_dir: Path, epochs: float, lr: float) -> TrainingArguments:
    save = {"save_strategy": "epoch"} if cfg.checkpoint_steps is None else (
        {"save_strategy": "no"} if cfg.checkpoint_steps == 0 else {"save_strategy": "steps", "save_steps": cfg.checkpoint_steps}
    )
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=epochs,
        max_steps=cfg.max_steps,
        learning_rate=lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler,
        optim="adamw_torch",
        logging_steps=cfg.logging_steps,
        save_total_limit=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to=[],
        disable_tqdm=not verbose(),  # TrainProgress draws the bar
        remove_unused_columns=False,
        label_names=[],
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        # On a machine without an accelerator this makes torchrun/accelerate processes use DDP over gloo.
        use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
        **save,
    )


@dataclass
class _Data:
    """The encoded training data: chat format, records, rows and (with a retain side) the retain schedule."""

    fmt: ChatFormat
    forget: list[QARecord]
    retain: list[QARecord]
    rows: list[dict]
    schedule: Any
    dataset: RowDataset


def _encode(method, cfg: TrainConfig, tokenizer, forget: Items, retain: Items | None) -> _Data:
    """Encode the items into rows, pair one retain row with each forget row per epoch, draw DPO's refusals."""
    forget_recs = as_records(forget, "forget") if forget else []
    retain_recs = as_records(retain, "retain") if retain else []
    fmt = ChatFormat(tokenizer, max_length=cfg.max_length)
    refusals = load_refusals(cfg.refusals_file) if method.needs_preferred else []
    rows = build_rows(method, fmt, forget_recs, retain_recs, cfg.seed, refusals)
    schedule = None
    if rows and "retain" in rows[0] and method.uses_forget:
        schedule = retain_schedule(fmt, len(rows), retain_recs, planned_epochs(cfg, len(rows)), cfg.seed)
        if cfg.group_by_length:
            match_retain_lengths(rows, schedule)
    return _Data(fmt, forget_recs, retain_recs, rows, schedule, RowDataset(rows, schedule))


def _trainer(model, tokenizer, method, cfg: TrainConfig, data: _Data, args: TrainingArguments,
             callbacks: list | None) -> tuple[UnlearnTrainer, EpochProbe | None]:
    probe = None
    if cfg.eval_probe:
        probe = EpochProbe(
            data.fmt, data.forget[: cfg.probe_items], data.retain[: cfg.probe_items], tokenizer.pad_token_id,
            rouge=cfg.probe_rouge, keep_best=cfg.keep_best_epoch,
            require_forget_rise=method.forget_nll_rises, min_forget_rise=cfg.probe_min_forget_rise,
        )
    trainer = UnlearnTrainer(
        model=model,
        args=args,
        train_dataset=data.dataset,
        data_collator=PartCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=([probe] if probe else []) + ([RetainEpochCallback(data.dataset)] if data.schedule else []) + list(callbacks or []),
        method=method,
    )
    if not verbose():  # one rich bar instead of the Trainer's printed log dicts
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(TrainProgress())
    for cb in callbacks or []:  # callbacks that need more than the Trainer hands them (tokens seen: a bench's curve points)
        if hasattr(cb, "bind"):
            cb.bind(trainer)
    return trainer, probe


def _answer_term(trainer, tokenizer, method, cfg: TrainConfig, data: _Data, output_dir: Path) -> tuple[bool, dict | None]:
    """Add the 'original' part (the key span each D_fr row's answer replaced) when the rows carry it; with
    ``answer_source`` 'model' the span is found in the model's own greedy answers. Returns (term on, text counts)."""
    answer_term, answer_texts = bool(data.rows) and "original" in data.rows[0], None
    if answer_term and cfg.answer_source == "model":
        # Greedy answers are the same on every rank; only the main process keeps (and reuses) the cache.
        own = model_answers(trainer.model, tokenizer, [r.question for r in data.forget], adapter_off=cfg.lora,
                            cache=output_dir / "model_answers.jsonl" if trainer.is_world_process_zero() else None)
        texts, answer_texts = choose_answer_texts(data.forget, own)
        add_original_answers(data.rows, data.fmt, data.forget, method.name, texts)
        log.info("%s answer term: key spans lowered in the model's own answer for %d rows, in its answer to the "
                 "item's original question for %d, in the data's answer for %d", method.name, answer_texts["model"],
                 answer_texts["item"], answer_texts["data"])
    return answer_term, answer_texts


def _run(trainer, ckpt_dir: Path, resume: bool):
    """``trainer.train()``, continuing the last complete checkpoint with ``resume``; returns (output, seconds)."""
    if resume and trainer.is_world_process_zero():
        drop_incomplete_checkpoints(ckpt_dir)  # else the Trainer's rotation and re-saves trip over them
    checkpoint = last_complete_checkpoint(ckpt_dir) if resume else None  # other ranks may look before the drop
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    bar = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TrainProgress)), None)
    start = time.perf_counter()
    try:
        out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        if bar:
            bar.close()
    return out, time.perf_counter() - start


def train_unlearn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    forget: Items,
    retain: Items | None,
    cfg: TrainConfig,
    output_dir: Path,
    resume: bool = True,
    callbacks: list | None = None,
) -> TrainResult:
    """Train ``model`` in memory with ``cfg.method``'s loss and return it (a PeftModel with ``cfg.lora``).

    ``forget``/``retain`` are QARecords or dicts with question/answer (optional preferred). Nothing is
    written outside ``output_dir``; with ``resume`` half-written checkpoints in ``output_dir/checkpoints`` are
    removed and the last complete one is continued.
    """
    method = get_method(cfg.method, beta=cfg.beta, retain_weight=cfg.retain_weight, answer_weight=cfg.answer_weight,
                        retain_loss=cfg.retain_loss)
    epochs = resolved_epochs(cfg)
    lr = cfg.lr if cfg.lr is not None else method.default_lr(model.num_parameters())
    if cfg.lr is None:
        log.info("%s: learning rate %g (the method's default for a %.0fM-parameter model)", method.name, lr,
                 model.num_parameters() / 1e6)
    _set_threads(cfg)
    set_seed(cfg.seed)
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no pad token (ulmr.models.load_tokenizer sets it to EOS)")
    data = _encode(method, cfg, tokenizer, forget, retain)

    if cfg.lora:
        model = _wrap_lora(model, cfg)
    output_dir = Path(output_dir)
    ckpt_dir = output_dir / "checkpoints"
    args = _training_args(cfg, ckpt_dir, epochs, lr)
    trainer, probe = _trainer(model, tokenizer, method, cfg, data, args, callbacks)

    # The model as handed over is the reference: with LoRA, the same model with its adapter disabled.
    initial = ModelReference(trainer.model, adapter_off=cfg.lora)
    answer_term, answer_texts = _answer_term(trainer, tokenizer, method, cfg, data, output_dir)
    ref_parts = [p for p in method.ref_logp_parts if data.rows and p in data.rows[0]]  # 'original' may be absent
    if ref_parts:
        precompute_ref_logps(initial, data.rows, ref_parts, tokenizer.pad_token_id, batch_size=max(8, cfg.batch_size))
    if method.needs_ref_model:
        trainer.reference = initial if cfg.lora else frozen_copy(trainer.model, args.device)

    out, seconds = _run(trainer, ckpt_dir, resume)
    tokens, answer_tokens = trainer.total_tokens()
    if not cfg.keep_checkpoints and trainer.is_world_process_zero():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return TrainResult(
        model=trainer.model,
        steps=out.global_step,
        seconds=seconds,
        train_tokens=tokens,
        log_history=list(trainer.state.log_history),
        lora=cfg.lora,
        answer_tokens=answer_tokens,
        method=method.name,
        best_epoch=probe.best_epoch if probe else None,
        is_main_process=trainer.is_world_process_zero(),
        lr=lr,
        loss_weights={"beta": method.beta, "retain_weight": method.retain_weight, "answer_weight": method.answer_weight,
                      "retain_loss": method.retain_loss,
                      "answer_term": answer_term, "answer_source": cfg.answer_source if answer_term else None,
                      "answer_texts": answer_texts},
    )
