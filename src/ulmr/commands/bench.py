"""``ulmr bench tofu`` / ``ulmr bench rwku``: the seed paper's tables reproduced with one command each."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..methods.registry import method_names
from ..methods.ulmr import ULMR
from .common import check_value, validated

bench_app = typer.Typer(help="Benchmark protocols: TOFU (fine-tune, unlearn, evaluate) and RWKU (per target).", no_args_is_help=True)


def _csv(value: Optional[str], flag: str) -> Optional[list[str]]:
    """The comma-separated list, or None (the config's default) when the flag was not given."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{flag}: give a comma-separated list")
    return items


def _numbers(value: Optional[str], flag: str, cast: type, what: str) -> Optional[list]:
    """The comma-separated list as ``cast`` values (None when the flag was not given); one line naming the flag
    when an entry is not a ``what``."""
    if value is None:
        return None
    try:
        return [cast(x) for x in _csv(value, flag) or []]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated {what}, got '{value}'") from None


def _threads(threads: Optional[int]) -> None:
    from ..config import Threads  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    if check_value("--threads", threads, Optional[Threads]):
        import torch

        torch.set_num_threads(threads)


@bench_app.command("tofu")
def tofu_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model to fine-tune (id, dir, .gguf or smollm2-135m; default smollm2-135m)."),
    data: str = typer.Option(..., "--data", help="TOFU data directory (forget01.jsonl, retain99.jsonl, *_perturbed.jsonl ...) or hub id locuslab/TOFU."),
    forget_split: Optional[str] = typer.Option(None, "--forget-split", help="forget01 (default), forget05 or forget10."),
    methods: Optional[str] = typer.Option(None, "--methods", help=f"Comma-separated methods (default all: {','.join(method_names('tofu'))}; "
                                 "a method that starts from the base model, such as retrain, is the cached retain model)."),
    scale: Optional[str] = typer.Option(None, "--scale", help="mini (default; laptop: 8 retain authors, capped evaluation) or full (the paper's protocol, GPUs)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="curves (default: every method at its own defaults, evaluated along its run, ULMR at several α; one point per method chosen by the selection rule) or equal-steps (every method at one shared budget: the tables before 2026-12)."),
    curve_points: Optional[int] = typer.Option(None, "--curve-points", help="Points evaluated along each gradient method's run, halving back from its last step (curves protocol; 4: 24 steps -> 3, 6, 12, 24)."),
    ulmr_alphas: Optional[str] = typer.Option(None, "--ulmr-alphas", help="ULMR's α points, comma-separated (curves protocol; 0.2,0.4,0.5,0.6,0.8,1)."),
    allow_extrapolation: Optional[bool] = typer.Option(None, "--allow-extrapolation", help="Let --ulmr-alphas go above 1 (the task vector p_f − p_θ scaled beyond p_f)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Unlearning runs per method (seeds 0..N-1; default 1; curves: the selected point rerun at seeds 1..N-1); the table shows mean and spread."),
    seed_methods: Optional[str] = typer.Option(None, "--seed-methods", help="Comma-separated methods whose selected point is rerun at --seeds (curves protocol; default every method)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default runs/bench/tofu); rerunning into it resumes."),
    curves_from: Optional[Path] = typer.Option(None, "--curves-from", help="A previous curves run's results.json with the same settings: the methods it holds keep its seed-0 curve and selected point; only their seed reruns (--seeds) run."),
    train_retain: Optional[int] = typer.Option(None, help="Retain QA in the training set (mini: 160)."),
    eval_forget: Optional[int] = typer.Option(None, help="Forget items evaluated (mini: 40)."),
    eval_retain: Optional[int] = typer.Option(None, help="Retain items evaluated (mini: 40)."),
    eval_real_authors: Optional[int] = typer.Option(None, help="Real Authors items evaluated (mini: 50)."),
    eval_world_facts: Optional[int] = typer.Option(None, help="World Facts items evaluated (mini: 50)."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Greedy tokens per answer (mini: 64, full: 200)."),
    ft_lr: Optional[float] = typer.Option(None, help="Target/retain fine-tuning learning rate (mini: 3e-4, full: 1e-5)."),
    ft_epochs: Optional[float] = typer.Option(None, help="Target/retain fine-tuning epochs (5)."),
    ft_batch_size: Optional[int] = typer.Option(None, help="Fine-tuning batch size per device."),
    lr: Optional[float] = typer.Option(None, help="Unlearning learning rate of every method (curves: each method's own by model size; equal-steps: mini 2e-5, full 1e-5)."),
    epochs: Optional[float] = typer.Option(None, help="Unlearning epochs over the forget split (curves: each method's own; equal-steps: 5, fixing the step count of every method)."),
    batch_size: Optional[int] = typer.Option(None, help="Unlearning batch size per device (4)."),
    max_steps: Optional[int] = typer.Option(None, help="Unlearning optimizer steps for every method (overrides --epochs)."),
    alpha: Optional[float] = typer.Option(None, help="ULMR averaging weight (0.5)."),
    answer_weight: Optional[float] = typer.Option(None, help=f"ULMR's answer term γ ({ULMR.default_answer_weight:g}; 0 = the paper's plain SFT, as in the tables measured before 2026-11-29)."),
    retain_loss: Optional[str] = typer.Option(None, help="ULMR's retain term: nll (default) or kl (KL to the model before unlearning at the retain answers' positions)."),
    anchor: Optional[str] = typer.Option(None, help="The built-in anchor (the base model's answers to general questions, minus those naming what the forget or evaluation sets name) beside the retain set: method (default: for the methods whose recipe has it, ULMR), none, or all (every method with a retain set)."),
    generator: Optional[str] = typer.Option(None, help="ULMR's generator: base (the model before TOFU fine-tuning; default, because a small target that memorised TOFU stops following the prompts) or target (the paper's p_θ)."),
    eval_batch_size: Optional[int] = typer.Option(None, help="Evaluation batch size (16)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch."),
) -> None:
    """Fine-tune target and retain models (cached), unlearn the forget split with every method, evaluate all, write the table."""
    from ..benchmarks.tofu_bench import (  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
        TofuBenchConfig,
        check_config,
        run_tofu_bench,
    )

    cfg = validated(TofuBenchConfig, model=model, data=data, forget_split=forget_split, methods=_csv(methods, "--methods"), scale=scale,
                 protocol=protocol, curve_points=curve_points, ulmr_alphas=_numbers(ulmr_alphas, '--ulmr-alphas', float, 'numbers'),
                 allow_extrapolation=allow_extrapolation, seeds=seeds, seed_methods=_csv(seed_methods, "--seed-methods"), out=out, curves_from=curves_from, train_retain=train_retain, eval_forget=eval_forget, eval_retain=eval_retain,
                 eval_real_authors=eval_real_authors, eval_world_facts=eval_world_facts, max_new_tokens=max_new_tokens,
                 ft_lr=ft_lr, ft_epochs=ft_epochs, ft_batch_size=ft_batch_size, lr=lr, epochs=epochs, batch_size=batch_size,
                 max_steps=max_steps, alpha=alpha, answer_weight=answer_weight, retain_loss=retain_loss, anchor=anchor, generator=generator, eval_batch_size=eval_batch_size)
    _threads(threads)
    check_config(cfg)
    res = run_tofu_bench(cfg)
    typer.echo(str(res["paths"]["markdown"]))


@bench_app.command("rwku")
def rwku_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model to unlearn from (id, dir, .gguf or smollm2-135m; default smollm2-135m)."),
    data: str = typer.Option(..., "--data", help="RWKU data directory with <N>_<Name>/ target folders."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated target numbers, each unlearned separately (default 111,106,31)."),
    methods: Optional[str] = typer.Option(None, "--methods", help=f"Comma-separated methods (default all: {','.join(method_names('rwku'))})."),
    limit_train: Optional[int] = typer.Option(None, "--limit-train", help="Training items per method, the same cap for every method (32)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate at most N items per probe set, MIA set and MMLU (0: all; default 30, the laptop setting)."),
    utility: Optional[str] = typer.Option(None, "--utility", help="easy, mmlu or both (default; Gen = MMLU 5-shot, Easy = built-in set)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="curves (default: every method at its own defaults, evaluated along its run, ULMR at several α; one point per method chosen by the selection rule) or equal-steps (every method at one shared budget: the tables before 2026-12)."),
    curve_points: Optional[int] = typer.Option(None, "--curve-points", help="Points evaluated along each gradient method's run, halving back from its last step (curves protocol; 4: 24 steps -> 3, 6, 12, 24)."),
    ulmr_alphas: Optional[str] = typer.Option(None, "--ulmr-alphas", help="ULMR's α points, comma-separated (curves protocol; 0.2,0.4,0.5,0.6,0.8,1)."),
    allow_extrapolation: Optional[bool] = typer.Option(None, "--allow-extrapolation", help="Let --ulmr-alphas go above 1 (the task vector p_f − p_θ scaled beyond p_f)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Unlearning runs per method and target (seeds 0..N-1; default 1; curves: the selected point rerun at seeds 1..N-1)."),
    seed_methods: Optional[str] = typer.Option(None, "--seed-methods", help="Comma-separated methods whose selected point is rerun at --seeds (curves protocol; default every method)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default runs/bench/rwku); rerunning into it resumes."),
    curves_from: Optional[Path] = typer.Option(None, "--curves-from", help="A previous curves run's results.json with the same settings: the methods it holds keep its seed-0 curve and selected point; only their seed reruns (--seeds) run."),
    lr: Optional[float] = typer.Option(None, help="Unlearning learning rate of every method (curves: each method's own by model size; equal-steps: 5e-5, the laptop setting for a 135M model)."),
    epochs: Optional[float] = typer.Option(None, help="Unlearning epochs over --limit-train items (curves: each method's own; equal-steps: 1, fixing the step count of every method)."),
    batch_size: Optional[int] = typer.Option(None, help="Unlearning batch size (4)."),
    max_steps: Optional[int] = typer.Option(None, help="Unlearning optimizer steps for every method (overrides --epochs)."),
    alpha: Optional[float] = typer.Option(None, help="ULMR averaging weight (0.5)."),
    answer_weight: Optional[float] = typer.Option(None, help=f"ULMR's answer term γ ({ULMR.default_answer_weight:g}; 0 = the paper's plain SFT, as in the tables measured before 2026-11-29)."),
    retain_loss: Optional[str] = typer.Option(None, help="ULMR's retain term: nll (default) or kl (KL to the model before unlearning at the retain answers' positions)."),
    anchor: Optional[str] = typer.Option(None, help="The built-in anchor (the base model's answers to general questions, minus those naming what the target's probes name) beside the retain side: method (default: for the methods whose recipe has it, ULMR), none, or all."),
    eval_batch_size: Optional[int] = typer.Option(None, help="Evaluation batch size (16)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch."),
) -> None:
    """Per target: evaluate the original model, unlearn with every method, evaluate; the table averages over targets."""
    from ..benchmarks.rwku_bench import (  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
        RwkuBenchConfig,
        run_rwku_bench,
    )

    cfg = validated(RwkuBenchConfig, model=model, data=data, targets=_numbers(targets, "--targets", int, "integers"), methods=_csv(methods, "--methods"),
                 limit_train=limit_train, limit=limit, utility=utility, protocol=protocol, curve_points=curve_points, ulmr_alphas=_numbers(ulmr_alphas, '--ulmr-alphas', float, 'numbers'),
                 allow_extrapolation=allow_extrapolation, seeds=seeds, seed_methods=_csv(seed_methods, "--seed-methods"), out=out, curves_from=curves_from, lr=lr, epochs=epochs,
                 batch_size=batch_size, max_steps=max_steps, alpha=alpha, answer_weight=answer_weight, retain_loss=retain_loss, anchor=anchor, eval_batch_size=eval_batch_size)
    _threads(threads)
    res = run_rwku_bench(cfg)
    typer.echo(str(res["paths"]["markdown"]))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
