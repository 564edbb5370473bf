"""``ulmr demo``: the first thing a new user runs."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Where the unlearned model, report.md, results.json and demo.png go."),
    epochs: float = typer.Option(None, help="Override the training epochs (default: the shipped default)."),
    alpha: float = typer.Option(None, help="Fix the averaging weight (default: chosen by --alpha auto on held-out probes)."),
    seed: int = typer.Option(None, help="Override the seed (default 0): generation sampling, data order, anchor pairing."),
    generator_dtype: str = typer.Option(None, help="Generate D_fr with a float32 (default), bfloat16 or float16 copy of the model."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the Trainer's own log lines and progress bar, and transformers' info logs."),
) -> None:
    """Unlearn built-in Harry Potter facts from the embedded SmolLM2-135M and show before vs after."""
    from ..demo import run_demo  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..progress import set_verbose  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    set_verbose(verbose)

    given = {"epochs": epochs, "alpha": alpha, "seed": seed, "generator_dtype": generator_dtype}
    overrides = {k: v for k, v in given.items() if v is not None}
    run_demo(out, **overrides)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
