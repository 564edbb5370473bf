"""The verify report: a rich/Markdown table of every check, verify.md, verify.json, verify_items.json, verify.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import write_json, write_text
from ..eval.report import Table, fmt, markdown, print_table
from ..eval.rwku import QA_PROMPT
from ..plots import pyplot, save_figure
from ..progress import console

FILES = {"json": "verify.json", "items": "verify_items.json", "markdown": "verify.md", "png": "verify.png"}
HEADER = ["Check", "Condition", "n", "Base ROUGE-L R (%)", "Unlearned ROUGE-L R (%)", "Base prob (%)",
          "Unlearned prob (%)", "Recovery (ROUGE-L)", "Recovery (prob)", "Result"]


WRAPPER = QA_PROMPT.split("\n", 1)[0]  # shown once in the notes, not in every example


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def overall_word(passed: bool | None) -> str:
    """PASS / FAIL, or INCONCLUSIVE when the base itself shows no forget knowledge."""
    return "INCONCLUSIVE" if passed is None else ("PASS" if passed else "FAIL")


def verify_table(summary: dict[str, Any]) -> Table:
    """One row per measured condition plus the over-refusal row; notes state every threshold and budget."""
    s = summary["settings"]
    rows = [[r["check"], r["condition"], str(r["n"]), fmt(r["base_rouge"], 100), fmt(r["unlearned_rouge"], 100),
             fmt(r["base_prob"], 100), fmt(r["unlearned_prob"], 100), fmt(r["recovery"]), fmt(r.get("prob_recovery")),
             _verdict(r["passed"])]
            for r in summary["rows"]]
    o = summary["over_refusal"]
    rows.append(["over-refusal", o["source"], str(o["n"]), f"{fmt(o['base_rate'], 100)} refused",
                 f"{fmt(o['unlearned_rate'], 100)} refused", "-", "-", f"{o['rise'] * 100:+.1f} pts", "-", _verdict(o["passed"])])
    rel = next((r for r in summary["rows"] if r["check"] == "relearning"), None)
    notes = [
        f"Recovery = (unlearned - floor) / (base - floor), by ROUGE-L recall and by answer probability (prob recovery), base "
        f"measured under the same condition; a knowledge check passes when both are <= {s['threshold']:g}; n/a when the base "
        "itself scores <= floor (the verdict then rests on the other).",
        f"Over-refusal passes when the refusal rate rises by <= {s['refusal_threshold'] * 100:g} points.",
        f"Relearning: {s['relearn_steps']} optimizer steps (AdamW, constant lr {s['relearn_lr']:g}, batch {min(s['relearn_batch_size'], len(summary['relearning']['train_items']))}) "
        f"of plain NLL on {len(summary['relearning']['train_items'])} items (half of the forget set), measured on the other half; the same procedure on the base gives the denominator"
        + (f"; floor = the reference model {summary['reference_model']} after the same procedure" if summary.get("reference_model") else "; floor 0")
        + (f"; unlearned before relearning: {fmt(rel['extra']['unlearned_before'], 100)}%." if rel else "."),
        f"Quantisation: round-to-nearest, group-wise symmetric, group size {s['group_size']}, every Linear weight except lm_head; "
        "the base is quantised the same way for the denominator.",
        f"Adversarial prompts: RWKU's attack types built by template (ulmr.verify.attacks), in RWKU's probe wrapper '{WRAPPER}'.",
        f"Paraphrases: {summary['sources']['paraphrase']}. Greedy answers, at most {s['max_new_tokens']} new tokens.",
    ]
    return Table(f"ulmr verify: {summary['model']} vs base {summary['base']}", HEADER, rows, notes)


def examples_table(items: dict[str, Any], n: int = 1) -> Table:
    """The first ``n`` items of every condition: prompt (shortened), base and unlearned answers."""
    rows = []
    base, unl = items.get("base", {}), items.get("unlearned", {})
    for cond, recs in unl.items():
        for b, u in list(zip(base.get(cond, []), recs))[:n]:
            q = u["question"].replace(WRAPPER, "").replace("\n", " ").strip()
            rows.append([cond, _cell(q, 160), _cell(b.get("generated")), _cell(u.get("generated"))])
    return Table("Examples (first item of each condition)", ["Condition", "Prompt", "Base answer", "Unlearned answer"], rows)


def _cell(text: str | None, width: int = 120) -> str:
    t = (text or "").replace("\n", " ").replace("|", "/")
    return t if len(t) <= width else t[: width - 3] + "..."


def verify_markdown(summary: dict[str, Any], items: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    verdict = overall_word(summary["passed"])
    checks = ", ".join(f"{k} {_verdict(v)}" for k, v in summary["checks"].items())
    head = [f"# ulmr verify: {verdict}", "",
            f"- unlearned model: `{summary['model']}`", f"- base model: `{summary['base']}`",
            f"- forget set: `{summary['forget']['source']}` ({summary['forget']['items']} items)",
            f"- over-refusal set: {summary['sources']['over_refusal']}",
            f"- checks: {checks}", f"- time: {summary['seconds']} s", ""]
    return "\n".join(head) + "\n" + markdown(verify_table(summary)) + "\n" + markdown(examples_table(items))


def plot(summary: dict[str, Any], path: Path) -> None:
    """Grouped bars (base vs unlearned ROUGE-L recall) per condition, recovery ratio above each pair."""

    plt = pyplot()

    rows = summary["rows"]
    labels = [r["condition"] if r["check"] == "adversarial" else r["check"] + ("\n" + r["condition"].split(",")[0] if r["check"] == "quantisation" else "")
              for r in rows]
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(8, 1.0 * len(rows)), 4.5))
    ax.bar([x - 0.2 for x in xs], [r["base_rouge"] * 100 for r in rows], 0.4, label="base")
    ax.bar([x + 0.2 for x in xs], [r["unlearned_rouge"] * 100 for r in rows], 0.4, label="unlearned")
    for x, r in zip(xs, rows):
        top = max(r["base_rouge"], r["unlearned_rouge"]) * 100
        color = {True: "green", False: "red"}.get(r["passed"], "gray")
        ax.text(x, top + 2, "n/a" if r["recovery"] is None else f"{r['recovery']:.2f}", ha="center", fontsize=8, color=color)
    ax.set_xticks(xs, labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("forget ROUGE-L recall (%)")
    ax.set_ylim(0, 115)
    o = summary["over_refusal"]
    ax.set_title(f"ulmr verify ({overall_word(summary['passed'])}): recovery ratio above each pair "
                 f"(pass <= {summary['settings']['threshold']:g}); over-refusal {o['rise'] * 100:+.1f} pts", fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_verify_report(out: str | Path, summary: dict[str, Any], items: dict[str, Any], show: bool = True) -> dict[str, Path]:
    """Write the four files atomically into ``out`` (their paths go into ``summary['files']``); print the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in FILES.items()}
    summary["files"] = {k: str(v) for k, v in paths.items()}
    write_json(paths["items"], items)
    write_text(paths["markdown"], verify_markdown(summary, items))
    plot(summary, paths["png"])
    write_json(paths["json"], summary)
    if show:
        print_table(verify_table(summary))
        color = {True: "green", False: "red"}.get(summary["passed"], "yellow")
        console.print(f"verify: [{color}]{overall_word(summary['passed'])}[/{color}]  "
                      f"report written to {out}", highlight=False)
    return paths
