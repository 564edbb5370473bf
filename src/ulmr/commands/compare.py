"""``ulmr compare``: several methods on the same data, one table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..methods.registry import method_names
from .common import validated


def compare_cmd(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Model to unlearn from (id, dir, .gguf or smollm2-135m)."),
    forget: str = typer.Option(..., "--forget", "-f", help="Forget set (.json/.jsonl/.csv with question/answer)."),
    methods: str = typer.Option("ulmr,ga,graddiff,npo", help=f"Comma-separated methods: {', '.join(method_names())}."),
    retain: Optional[str] = typer.Option(None, "--retain", "-r", help="Retain set (used in training where a method needs it, and measured)."),
    probe: Optional[str] = typer.Option(None, help="Held-out QA file (e.g. paraphrased forget questions), measured only."),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps for every method (default: ULMR's steps for --epochs)."),
    epochs: float = typer.Option(3.0, help="Epochs of ULMR's D_fr that set the common number of steps."),
    lr: Optional[float] = typer.Option(None, help="Learning rate for every method (default: each method's)."),
    alpha: Optional[float] = typer.Option(None, help="Average every method with the base at this α (ULMR: 0.5 by default)."),
    batch_size: int = typer.Option(4, help="Per-device batch size."),
    max_new_tokens: int = typer.Option(64, help="Max new tokens per evaluated answer."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Output directory (a model dir per method, compare.json, compare.md)."),
) -> None:
    """Run each method on your data with equal optimizer steps; print forget / probe / retain ROUGE-L and probability."""
    from ..compare import compare  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..config import CompareConfig  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    names = [m.strip() for m in methods.split(",") if m.strip()]
    cfg = validated(CompareConfig, model=model, forget=forget, methods=names, retain=retain, probe=probe, steps=steps,
                    epochs=epochs, lr=lr, alpha=alpha, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed, out=out)
    compare(cfg.model, cfg.forget, cfg.methods, cfg.out, cfg.retain, cfg.probe, cfg.steps, cfg.epochs, cfg.lr, cfg.alpha,
            cfg.batch_size, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
