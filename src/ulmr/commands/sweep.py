"""``ulmr sweep``: the α trade-off curve of a kept fine-tuned model, and automatic α selection."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..selection import RETAIN_SHARE, UTILITY_DROP
from .common import validated


def sweep_cmd(
    base: str = typer.Option(..., "--base", help="The original model p_theta (id, dir, .gguf or smollm2-135m)."),
    finetuned: Path = typer.Option(..., "--finetuned", help="p_f: a run's finetuned/ dir (kept with --keep-finetuned) or a LoRA adapter dir."),
    alphas: str = typer.Option(",".join(f"{a:g}" for a in [round(0.1 * i, 1) for i in range(11)]), help="Comma-separated α values in [0, 1]."),
    probe: Optional[str] = typer.Option(None, help="Held-out QA file of paraphrased forget questions (default: the run's probe.jsonl, in OUT.records)."),
    forget: Optional[str] = typer.Option(None, help="Forget set; its paraphrased_question column serves as probe when present (TOFU)."),
    retain: Optional[str] = typer.Option(None, help="Retain QA file (default: built-in anchor questions with the base model's answers)."),
    retain_limit: Optional[int] = typer.Option(32, help="Use at most this many retain items per α."),
    utility_limit: Optional[int] = typer.Option(None, help="Use at most this many easy multiple-choice items per α."),
    select: str = typer.Option("auto", help="'auto' marks the selected α (see --retain-share, --utility-drop); 'none' only draws the curve."),
    retain_share: float = typer.Option(RETAIN_SHARE, help="Auto selection keeps retain ROUGE-L >= this fraction of its α=0 value."),
    utility_drop: float = typer.Option(UTILITY_DROP * 100, help="Auto selection keeps utility within this many points (of 100) of its α=0 value."),
    max_new_tokens: int = typer.Option(48, help="Max new tokens per probe answer."),
    out: Path = typer.Option(Path("runs/sweep"), "--out", "-o", help="Where sweep.json, sweep.md and sweep.png go."),
) -> None:
    """Evaluate p_u = α·p_f + (1−α)·p_θ for each α in memory (nothing written per α); table + PNG curve."""
    from ..config import SweepConfig  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..models import base_weights_dir, load, load_model  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..sweep import (  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
        parse_alphas,
        report,
        resolve_probe,
        retain_probe,
        select_alpha,
        sweep,
    )

    opts = validated(SweepConfig, alphas=parse_alphas(alphas), retain_share=retain_share, utility_drop=utility_drop, retain_limit=retain_limit,
                     utility_limit=utility_limit, select=select, max_new_tokens=max_new_tokens)
    grid, retain_limit, utility_limit, max_new_tokens = opts.alphas, opts.retain_limit, opts.utility_limit, opts.max_new_tokens
    probe_items, probe_src = resolve_probe(Path(finetuned), probe, forget)
    base_model, tok = load(base)
    retain_items, retain_src = retain_probe(base_model, tok, base, retain, retain_limit)
    if (Path(finetuned) / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(base_model, str(finetuned))
    else:
        del base_model
        model = load_model(str(finetuned))
    points = sweep(model, tok, None if hasattr(model, "peft_config") else base_weights_dir(base), grid, probe_items,
                   retain_items, max_new_tokens, utility_limit)
    chosen, rule = select_alpha(points, opts.retain_share, opts.utility_drop / 100) if opts.select == "auto" and 0.0 in grid else (None, None)
    report(points, out, chosen, rule, {"base": base, "finetuned": str(finetuned), "probe": probe_src, "retain": retain_src})
    typer.echo(f"sweep written to {out}" + (f"; auto-selected alpha = {chosen}" if chosen is not None else ""))


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
