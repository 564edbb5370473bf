"""``ulmr demo``: unlearn a small built-in forget set (Harry Potter facts) from the embedded model and
show before vs after: forget and paraphrase knowledge, neighbour knowledge, over-refusal, utility."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .config import UnlearnConfig
from .data.records import load_qa
from .errors import validated
from .eval.qa import evaluate_qa
from .eval.report import Table, fmt, markdown, print_table
from .eval.utility import evaluate_utility_easy
from .models import load
from .paths import resources_dir
from .pipeline import unlearn
from .plots import pyplot, save_figure
from .progress import console

DEMO_SETS = {"forget": "forget.jsonl", "paraphrase": "paraphrases.jsonl", "neighbour": "neighbour.jsonl"}
DEMO_MODEL = "smollm2-135m"
GEN_TOKENS = 48
# The demo runs ULMR's defaults (lr 1e-4 for a 135M model, 3 epochs, λ = 2, answer term γ = 0.1, built-in
# anchor) with α chosen by `--alpha auto` on the run's own held-out probe rewrites and the anchor, not fixed
# for these sets: the α of 0.4 chosen by a sweep on the demo sets at seed 0 failed the neighbour check at
# seeds 1 and 2 (docs/results/demo.md); the automatic choice passed all three checks at seeds 0, 1 and 2
# (docs/results/ulmr_ablation.md).
DEMO_SETTINGS = {"alpha": "auto"}

# Acceptance rules the demo checks and prints. EPS: a value exactly on a bound passes despite float rounding
# (0.75 - 0.73 is 0.020000000000000018).
EPS = 1e-9
RULES = [
    ("forget ROUGE-L recall after <= 50% of before", lambda b, a: a["forget_rouge"] <= 0.5 * b["forget_rouge"] + EPS),
    ("neighbour ROUGE-L recall after >= 85% of before", lambda b, a: a["neighbour_rouge"] >= 0.85 * b["neighbour_rouge"] - EPS),
    ("utility accuracy drops by <= 2 points", lambda b, a: (b["utility_acc"] - a["utility_acc"]) * 100 <= 2.0 + EPS),
]


def check_results(before: dict[str, float], after: dict[str, float]) -> list[tuple[str, bool]]:
    """The demo's PASS/FAIL lines: (rule, passed) for each of :data:`RULES`."""
    return [(name, bool(rule(before, after))) for name, rule in RULES]


def demo_sets() -> dict[str, list]:
    """The built-in demo sets, loaded from the package resources."""
    base = resources_dir() / "demo"
    return {name: load_qa(base / f) for name, f in DEMO_SETS.items()}


def measure(model, tokenizer, sets: dict[str, list]) -> tuple[dict[str, float], dict[str, Any]]:
    """The demo's numbers for one model, plus the per-item QA records."""

    qa = evaluate_qa(model, tokenizer, sets, max_new_tokens=GEN_TOKENS, batch_size=32)
    util = evaluate_utility_easy(model, tokenizer, batch_size=32)
    s = qa["sets"]
    numbers = {
        "forget_rouge": s["forget"]["rougeL_recall"],
        "forget_prob": s["forget"]["prob"],
        "paraphrase_rouge": s["paraphrase"]["rougeL_recall"],
        "neighbour_rouge": s["neighbour"]["rougeL_recall"],
        "neighbour_refusal": s["neighbour"]["refusal_rate"],
        "utility_acc": util["accuracy"],
    }
    numbers.update({f"{name}_rouge": v["rougeL_recall"] for name, v in s.items() if name not in DEMO_SETS})
    return numbers, qa["items"]


ROWS = [
    ("Forget ROUGE-L recall", "forget_rouge", "lower"),
    ("Forget answer probability", "forget_prob", "lower"),
    ("Held-out paraphrase ROUGE-L recall", "paraphrase_rouge", "lower"),
    ("Neighbour ROUGE-L recall", "neighbour_rouge", "keep"),
    ("Neighbour over-refusal rate", "neighbour_refusal", "keep low"),
    ("Utility accuracy (easy MC)", "utility_acc", "keep"),
]


def results_table(before: dict[str, float], after: dict[str, float], n_util: str = "") -> Table:
    rows = [[label, fmt(before[k], 100), fmt(after[k], 100), goal] for label, k, goal in ROWS]
    return Table("ulmr demo: before vs after unlearning (%)", ["Metric", "Before", "After", "Goal"], rows)


def examples_table(items_before: dict, items_after: dict, n: int = 3) -> Table:
    rows = []
    for b, a in list(zip(items_before["forget"], items_after["forget"]))[:n]:
        rows.append([b["question"], b["generated"], a["generated"]])
    return Table("Example forget questions", ["Question", "Before", "After"], rows)


def plot(before: dict[str, float], after: dict[str, float], path: Path) -> None:
    """Grouped bars, before vs after, one pair per metric."""

    plt = pyplot()

    labels = [r[0].replace(" ROUGE-L recall", "\nROUGE-L").replace(" rate", "").replace(" (easy MC)", "") for r in ROWS]
    xs = range(len(ROWS))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar([x - 0.2 for x in xs], [before[r[1]] * 100 for r in ROWS], 0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [after[r[1]] * 100 for r in ROWS], 0.4, label="after")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("%")
    ax.set_title("ulmr demo: SmolLM2-135M-Instruct forgets Harry Potter facts")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def run_demo(out: Path, **overrides: Any) -> dict[str, Any]:
    """Run the demo into ``out`` (model in out/model, report.md, results.json, demo.png)."""

    t0 = time.time()
    timings: dict[str, float] = {}
    out = Path(out)
    settings = dict(model=DEMO_MODEL, forget=str(resources_dir() / "demo" / DEMO_SETS["forget"]), out=out / "model",
                    overwrite=True, **DEMO_SETTINGS)
    settings.update(overrides)
    cfg = validated(UnlearnConfig, **settings)  # bad overrides fail here, before the model loads
    sets = demo_sets()
    console.rule("[bold]1/4 base model: what it knows before")
    t = time.time()
    model, tok = load(DEMO_MODEL)
    before, items_before = measure(model, tok, sets)
    del model
    timings["evaluate_before"] = time.time() - t

    console.rule("[bold]2/4 unlearning (generation, training, averaging)")
    t = time.time()
    run = unlearn(cfg)
    timings["unlearn"] = time.time() - t

    console.rule("[bold]3/4 unlearned model: what it knows after")
    t = time.time()
    model, tok = load(str(run.out))
    after, items_after = measure(model, tok, sets)
    timings["evaluate_after"] = time.time() - t

    console.rule("[bold]4/4 report")
    table, examples = results_table(before, after), examples_table(items_before, items_after)
    checks = check_results(before, after)
    timings["total"] = time.time() - t0
    report = [
        "# ulmr demo report", "",
        f"Model: {DEMO_MODEL} (SmolLM2-135M-Instruct). Forget set: {len(sets['forget'])} Harry Potter facts; "
        f"held-out paraphrases: {len(sets['paraphrase'])}; neighbour set: {len(sets['neighbour'])} other books/authors "
        "and famous facts; utility: the built-in easy multiple-choice set.", "",
        markdown(table), markdown(examples),
        "### Checks", "", *[f"- [{'x' if ok else ' '}] {name}" for name, ok in checks], "",
        "### Settings", "", "```json", __import__("json").dumps(run.record["settings"], indent=2, default=str), "```", "",
        f"Counts: {run.record['counts']}", "",
        *([f"α = {run.record['alpha']:g}, chosen by `--alpha auto`: {run.record['alpha_auto']['rule']}", ""]
          if run.record.get("alpha_auto") else []),
        "### Timings (s)", "", *[f"- {k}: {v:.1f}" for k, v in timings.items()],
        *[f"- unlearn/{k}: {v}" for k, v in run.record.get("timings_s", {}).items()], "",
    ]
    write_text(out / "report.md", "\n".join(report))
    result = {"before": before, "after": after, "checks": dict(checks), "alpha": run.record.get("alpha"),
              "timings_s": timings, "model": str(run.out),
              "items_before": items_before, "items_after": items_after}
    write_json(out / "results.json", result)
    plot(before, after, out / "demo.png")
    print_table(table)
    print_table(examples)
    for name, ok in checks:
        console.print(f"  {'[green]PASS' if ok else '[red]FAIL'}[/] {name}")
    if run.record.get("alpha_auto"):
        console.print(f"  α = {run.record['alpha']:g} (chosen by --alpha auto)")
    console.print(f"\nunlearned model: [bold]{run.out}[/]\nreport: {out / 'report.md'}\nplot: {out / 'demo.png'}  ({timings['total']:.0f} s)")
    return result
