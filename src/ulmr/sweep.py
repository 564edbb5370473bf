"""The α sweep: what each averaging weight costs, and choosing α automatically.

For each α, p_u = p_θ + α·(p_f − p_θ) is built in memory by :class:`ulmr.merge.Interpolator` (full
weights: from copies of p_f and p_θ; LoRA: by scaling the adapter, nothing merged) and measured on quick
held-out probes:

- **forget (probe)**: ROUGE-L recall and answer probability on held-out paraphrases of the forget
  questions — never the rewrites used in training;
- **retain**: ROUGE-L recall on the retain set (``--retain``) or on the built-in anchor questions
  against the base model's own answers, and the over-refusal rate there;
- **utility**: accuracy on the built-in easy multiple-choice set.

``select_alpha`` applies the one selection rule of :mod:`ulmr.selection` (the benches use it too): the α
that forgets most (lowest probe ROUGE-L) while retain ROUGE-L stays ≥ ``retain_share`` × its α = 0 value
(default 85%) and utility within ``utility_drop`` of its α = 0 value (default 2 points), ties to the smaller
α; when no α holds, the α with the highest utility, marked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from .anchor import anchor_set
from .atomic import write_json, write_text
from .config import SweepConfig
from .data.records import QARecord, load_qa
from .errors import ConfigError, validation_message
from .eval.qa import evaluate_qa
from .eval.report import Table, fmt, markdown, print_table
from .eval.utility import evaluate_utility_easy
from .merge import Interpolator
from .models import cached_model_dir
from .paths import find_run_file
from .plots import pyplot, save_figure
from .progress import console
from .selection import RETAIN_SHARE, UTILITY_DROP, probe_rule, select

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = [round(0.1 * i, 1) for i in range(11)]
AUTO_ALPHAS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]


@dataclass
class SweepPoint:
    alpha: float
    probe_rouge: float
    probe_prob: float
    retain_rouge: float
    retain_refusal: float
    utility: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def parse_alphas(text: str) -> list[float]:
    """'0,0.1,0.5' -> [0.0, 0.1, 0.5]; the range (0 <= α <= 1: the sweep interpolates only) is
    :class:`ulmr.config.SweepConfig`'s."""
    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise ConfigError(f"--alphas: expected comma-separated numbers, got {text!r}") from e
    try:
        return SweepConfig(alphas=values).alphas
    except ValidationError as e:
        raise ConfigError(validation_message(e)) from e


def select_alpha(points: Sequence[SweepPoint], retain_share: float = RETAIN_SHARE,
                 utility_drop: float = UTILITY_DROP) -> tuple[float, str]:
    """The α > 0 that :func:`ulmr.selection.select` picks under :func:`ulmr.selection.probe_rule` (retain
    ROUGE-L >= ``retain_share`` x its α = 0 value, utility at most ``utility_drop`` below it; the curve must
    include α = 0): the lowest probe ROUGE-L among the α that hold, else the α with the highest utility
    (marked in the rule text). Returns (α, the rule as text)."""
    ref = next((p for p in points if p.alpha == 0.0), None)
    if ref is None:
        raise ConfigError("automatic α selection needs α = 0 in the sweep")
    candidates = sorted((p for p in points if p.alpha > 0), key=lambda p: p.alpha)  # ties -> smaller α
    if not candidates:
        raise ConfigError("automatic α selection needs an α > 0 in the sweep")
    chosen = select([p.as_dict() for p in candidates], probe_rule(ref.as_dict(), retain_share, utility_drop))
    if not chosen.holds:
        log.warning("no α keeps utility and retain ROUGE-L as α = 0 had them (%s); taking the α with the highest utility", chosen.rule)
    return candidates[chosen.index].alpha, chosen.rule


def measure_point(model, tokenizer, alpha: float, probe: list[QARecord], retain: list[QARecord],
                  max_new_tokens: int = 48, utility_limit: int | None = None) -> SweepPoint:
    """One point of the curve (see the module docstring)."""

    qa = evaluate_qa(model, tokenizer, {"forget_probe": probe, "retain": retain}, max_new_tokens=max_new_tokens, batch_size=32)
    util = evaluate_utility_easy(model, tokenizer, limit=utility_limit, batch_size=32)
    s = qa["sets"]
    return SweepPoint(alpha, s["forget_probe"]["rougeL_recall"], s["forget_probe"]["prob"], s["retain"]["rougeL_recall"],
                      s["retain"]["refusal_rate"], util["accuracy"])


def sweep(finetuned, tokenizer, base_dir: str | Path | None, alphas: Sequence[float], probe: list[QARecord],
          retain: list[QARecord], max_new_tokens: int = 48, utility_limit: int | None = None) -> list[SweepPoint]:
    """Measure every α (the model's weights end at p_f again)."""

    interp = Interpolator(finetuned, base_dir)
    points = []
    for a in alphas:
        console.print(f"[bold]α = {a:.2f}[/]")
        interp.set(a)
        points.append(measure_point(finetuned, tokenizer, a, probe, retain, max_new_tokens, utility_limit))
    interp.set(1.0)
    return points


def curve_table(points: Sequence[SweepPoint], chosen: float | None = None):

    rows = [[f"{p.alpha:.2f}{' *' if chosen is not None and p.alpha == chosen else ''}", fmt(p.probe_rouge, 100), fmt(p.probe_prob, 100),
             fmt(p.retain_rouge, 100), fmt(p.retain_refusal, 100), fmt(p.utility, 100)] for p in points]
    return Table("α sweep: p_u = α·p_f + (1−α)·p_θ (%)",
                 ["α", "Probe ROUGE-L", "Probe prob", "Retain ROUGE-L", "Retain over-refusal", "Utility acc"], rows,
                 ["Probe = held-out paraphrases of the forget questions (lower = more forgotten).",
                  "* = automatically selected α."] if chosen is not None else
                 ["Probe = held-out paraphrases of the forget questions (lower = more forgotten)."])


def plot_curve(points: Sequence[SweepPoint], path: Path, chosen: float | None = None) -> None:
    """The trade-off curve as a PNG."""

    plt = pyplot()

    xs = [p.alpha for p in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    for attr, label in [("probe_rouge", "forget probe ROUGE-L"), ("probe_prob", "forget probe prob"),
                        ("retain_rouge", "retain ROUGE-L"), ("retain_refusal", "retain over-refusal"), ("utility", "utility acc")]:
        ax.plot(xs, [getattr(p, attr) * 100 for p in points], marker="o", label=label)
    if chosen is not None:
        ax.axvline(chosen, color="gray", linestyle="--", label=f"auto α = {chosen:.2f}")
    ax.set_xlabel("α (weight of the fine-tuned model)")
    ax.set_ylabel("%")
    ax.set_title("Parameter averaging trade-off")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def report(points: Sequence[SweepPoint], out: Path, chosen: float | None, rule: str | None, extra: dict[str, Any]) -> None:
    """Write sweep.json, sweep.md and sweep.png into ``out`` and print the table."""

    table = curve_table(points, chosen)
    write_json(out / "sweep.json", {"points": [p.as_dict() for p in points], "chosen_alpha": chosen, "rule": rule, **extra})
    write_text(out / "sweep.md", markdown(table) + (f"\nAuto-selected α = {chosen} ({rule})\n" if chosen is not None else ""))
    plot_curve(points, out / "sweep.png", chosen)
    print_table(table)


def resolve_probe(finetuned_dir: Path, probe: str | None, forget: str | None) -> tuple[list[QARecord], str]:
    """Held-out probe items: ``--probe``, else the run's probe.jsonl (in ``OUT.records``, or ``OUT`` for older runs),
    else TOFU-style paraphrased questions."""

    if probe:
        return load_qa(probe), str(probe)
    for run_dir in (finetuned_dir, finetuned_dir.parent):  # a run's OUT, or OUT/finetuned of --keep-finetuned
        cand = find_run_file(run_dir, "probe.jsonl")
        if cand is not None:
            return load_qa(cand), str(cand)
    if forget:
        recs = load_qa(forget)
        para = [QARecord(r.extra["paraphrased_question"], r.answer) for r in recs if isinstance(r.extra.get("paraphrased_question"), str)]
        if para:
            return para, f"{forget} (paraphrased_question)"
    raise ConfigError("no held-out probe found: pass --probe QA_FILE (or a run dir whose OUT.records has probe.jsonl, or --forget with paraphrased_question)")


def retain_probe(base_model, tokenizer, base_spec: str, retain: str | None, limit: int | None = None) -> tuple[list[QARecord], str]:
    """Retain items: ``--retain``, else the built-in anchor questions with the base model's answers."""

    if retain:
        return load_qa(retain)[:limit or None], str(retain)
    return anchor_set(base_model, tokenizer, cached_model_dir(base_spec))[:limit or None], "built-in anchor (base model answers)"
