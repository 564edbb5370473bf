"""``ulmr compare``: every listed method on the user's own data, with equal optimizer steps, in one table.

Each method runs through the same pipeline as ``ulmr unlearn`` (ULMR: generation + SFT + averaging;
baselines: their loss, no averaging unless ``--alpha`` is given), then the base and every unlearned
model are measured with the QA evaluator on the forget set, the held-out probe and the retain set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .config import UnlearnConfig
from .data.records import load_qa
from .errors import ConfigError, validated
from .eval.qa import evaluate_qa
from .eval.report import Table, fmt, markdown, print_table
from .methods.registry import method_class
from .models import load
from .pipeline import unlearn
from .progress import console
from .training.data import equal_steps


def measure(spec: str, sets: dict[str, list], max_new_tokens: int) -> dict[str, Any]:

    model, tok = load(spec)
    return evaluate_qa(model, tok, sets, max_new_tokens=max_new_tokens, batch_size=32)


def compare(model: str, forget: str, methods: list[str], out: Path, retain: str | None = None, probe: str | None = None,
            steps: int | None = None, epochs: float = 3.0, lr: float | None = None, alpha: float | None = None,
            batch_size: int = 4, num_rewrites: int = 2, max_new_tokens: int = 64, seed: int = 0) -> dict[str, Any]:
    """Run and evaluate every method; writes compare.json and compare.md into ``out``."""

    records = load_qa(forget)
    retain_only = [m for m in methods if not method_class(m).uses_forget]
    if retain_only and not retain:
        raise ConfigError(f"method '{retain_only[0]}' needs --retain (it fine-tunes on the retain set only)")
    steps = steps or equal_steps(len(records) * (num_rewrites + 1), batch_size, 1, epochs)  # ULMR's D_fr rows
    sets = {"forget": records}
    if probe:
        sets["probe"] = load_qa(probe)
    if retain:
        sets["retain"] = load_qa(retain)
    # Every run's options are validated before the base model is loaded and measured.
    configs = {method: validated(UnlearnConfig, model=model, forget=forget, out=out / method, method=method, retain=retain,
                                 max_steps=steps, lr=lr, alpha=alpha, batch_size=batch_size, num_rewrites=num_rewrites,
                                 seed=seed, overwrite=True) for method in methods}
    results: dict[str, Any] = {"base": {"eval": measure(model, sets, max_new_tokens)["sets"], "seconds": 0.0}}
    for method, cfg in configs.items():
        console.rule(f"[bold]{method}")
        t = time.time()
        run = unlearn(cfg)
        seconds = time.time() - t
        results[method] = {"eval": measure(str(run.out), sets, max_new_tokens)["sets"], "seconds": seconds,
                           "steps": run.record["training"]["steps"], "alpha": run.record["alpha"]}
    table = compare_table(results, list(sets))
    summary = {"model": model, "forget": forget, "retain": retain, "probe": probe, "optimizer_steps": steps, "lr": lr,
               "results": results}
    write_json(out / "compare.json", summary)
    write_text(out / "compare.md", markdown(table))
    print_table(table)
    return summary


def compare_table(results: dict[str, Any], set_names: list[str]) -> Table:
    header = ["Method"] + [f"{s} R / P" for s in set_names] + ["Over-refusal (retain)", "Wall s"]
    rows = []
    for name, r in results.items():
        ev = r["eval"]
        row = [name] + [f"{fmt(ev[s]['rougeL_recall'], 100)} / {fmt(ev[s]['prob'], 100)}" for s in set_names]
        row += [fmt(ev["retain"]["refusal_rate"], 100) if "retain" in ev else "-", f"{r['seconds']:.0f}"]
        rows.append(row)
    return Table("ulmr compare: ROUGE-L recall / answer probability (%)", header, rows,
                 ["Forget and probe: lower is better; retain: higher is better. Every method ran the same number of optimizer steps."])
