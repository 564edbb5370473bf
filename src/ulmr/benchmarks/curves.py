"""The curves protocol of ``ulmr bench tofu`` and ``ulmr bench rwku`` (their default; ``--protocol equal-steps``
keeps the older table of every method at one shared budget).

- A gradient method (GA, GradDiff, KL, DPO, NPO) trains once at its own defaults (learning rate by model size,
  epochs) and is evaluated after ``curve_points`` optimizer steps of that one run, halving back from its last
  step (:func:`eval_steps`, :class:`StepPoints`).
- ULMR trains p_f once and is evaluated at each α of :data:`ALPHAS`, p_u = p_θ + α·(p_f − p_θ) built in memory
  (:func:`alpha_points`).
- Every point is a stage of its own (``<job>/step<N>``, ``<job>/alpha<α>``): an interrupted bench never
  re-evaluates a finished point.
- :func:`summarise` picks each method's point by the one rule of :mod:`ulmr.selection`, looking only at the
  selection half of the forget items, and reports the other half with 95% bootstrap intervals over items.

A point is a stage result: ``metrics`` (all items), ``per_item`` (``"<group>:<field>"`` -> one value per item,
from which the bench's ``metrics_of`` recomputes every metric on any subset of items), ``point`` (its step or
α) and ``cost`` (optimizer steps, trained tokens, training seconds).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ValidationInfo, field_validator
from transformers import TrainerCallback

from ..config import TrainConfig, alpha_problem
from ..errors import ConfigError
from ..eval.report import Table
from ..merge import Interpolator
from ..methods.registry import method_names
from ..models import base_weights_dir
from ..plots import pyplot, save_figure
from ..selection import PerItem, Rule, bootstrap_intervals, halves, select
from . import common
from .common import StageStore

log = logging.getLogger("ulmr.bench")

ALPHAS = (0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
SPLIT_SEED = 0  # the one seeded split of the forget items into selection and report halves


def check_alphas(values: Sequence[float], allow_extrapolation: bool) -> list[float]:
    """ULMR's α points of a bench (pydantic validator body): sorted, unique, each in (0, 1], or above 1 (the task
    vector extrapolated) with ``allow_extrapolation``."""
    if not values:
        raise ValueError("give at least one α")
    for a in values:
        problem = alpha_problem(a, allow_extrapolation, hint=False)
        if problem:
            raise ValueError(problem + ("; pass --allow-extrapolation to extrapolate the task vector" if a > 1 else ""))
    return sorted(set(float(a) for a in values))


class ProtocolChecks(BaseModel):
    """The checks of the options both benches' configs declare (methods, ULMR's α points, --seed-methods);
    a config names its benchmark in ``bench``."""

    bench: ClassVar[str]

    @field_validator("ulmr_alphas", check_fields=False)
    @classmethod
    def _alphas(cls, v: list[float], info: ValidationInfo) -> list[float]:
        return check_alphas(v, bool(info.data.get("allow_extrapolation")))

    @field_validator("methods", check_fields=False)
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return common.check_methods(v, method_names(cls.bench))

    @field_validator("seed_methods", check_fields=False)
    @classmethod
    def _seed_methods(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return common.check_seed_methods(v, info.data.get("methods") or [], info.data.get("protocol"))


Evaluate = Callable[[Any, Any], dict[str, Any]]  # (model in eval mode, tokenizer) -> metrics + per_item


def eval_steps(total: int, points: int) -> list[int]:
    """``points`` optimizer steps halving back from ``total``: total/2^(points-1), ..., total/4, total/2, total
    (rounded up; fewer when steps run out).

    Halving, not even spacing: a method that forgets fast spends its utility early. On RWKU (2026-12-07) GA at
    its default rate was already 6.5 (target 111) and 4.6 (target 106) Easy points below Before at the first of
    four evenly spaced points (step 6 of 24), past the 2-point floor, so even spacing never showed it at its best.
    """
    return sorted({max(1, math.ceil(total / 2 ** (points - k))) for k in range(1, points + 1)})


class StepPoints(TrainerCallback):
    """Evaluates the model in training after the steps of :func:`eval_steps` (the run's own ``max_steps``), each
    point stored as stage ``<prefix>/step<N>`` with its cost so far; a stored point is reused, not re-evaluated.
    With explicit steps ``at`` the run stops after the last of them."""

    def __init__(self, store: StageStore, prefix: str, points: int, evaluate: Evaluate, at: Sequence[int] | None = None,
                 recipe: str | None = None):
        self.store, self.prefix, self.n_points, self.evaluate, self.recipe = store, prefix, points, evaluate, recipe
        self.at = list(at) if at else None  # explicit steps (a selected point rerun at another seed)
        self.steps: list[int] = []
        self.results: list[dict[str, Any]] = []
        self.trainer = None
        self._start = self._eval_seconds = 0.0

    def bind(self, trainer) -> None:
        """Called by :func:`ulmr.train.train_unlearn`: the trainer counts the tokens seen."""
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = self.at or eval_steps(state.max_steps, self.n_points)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        step = state.global_step
        if step not in self.steps:
            return
        tokens = self.trainer.total_tokens()[0] if self.trainer is not None else None  # a collective: every rank calls it
        cost = {"steps": step, "train_tokens": tokens,
                "train_seconds": round(time.perf_counter() - self._start - self._eval_seconds, 1)}
        t = time.perf_counter()
        model.eval()
        try:
            res = self.store.run(f"{self.prefix}/step{step}",
                                 lambda: {**self.evaluate(model, processing_class), "point": {"step": step}, "cost": cost},
                                 self.recipe)
        finally:
            model.train()
        self._eval_seconds += time.perf_counter() - t
        self.results.append(res)
        if self.at and step >= max(self.at):
            # a selected point rerun at another seed: nothing after it is used. The schedule is the full run's
            # (same max_steps), so the weights at this step equal those of the full run's.
            control.should_training_stop = True
        return control


def alpha_points(store: StageStore, prefix: str, model, tokenizer, base_dir: str, evaluate: Evaluate,
                 cost: Mapping[str, Any], alphas: Sequence[float] = ALPHAS, recipe: str | None = None) -> list[dict[str, Any]]:
    """ULMR's curve: each α as stage ``<prefix>/alpha<α>`` (the weights of ``model`` end at p_f again)."""
    interp: Interpolator | None = None
    out = []
    for a in alphas:
        def run(a: float = a) -> dict[str, Any]:
            nonlocal interp
            interp = interp or Interpolator(model, base_dir)
            interp.set(a)
            return {**evaluate(model, tokenizer), "point": {"alpha": a}, "cost": dict(cost)}
        out.append(store.run(f"{prefix}/alpha{a:g}", run, recipe))
    if interp is not None:
        interp.set(1.0)
    return out


# --------------------------------------------------------------------------- selection and report
@dataclass(frozen=True)
class View:
    """What a bench tells :func:`summarise`: its metrics from per-item values, which item groups are forget
    items (split into halves), and its selection rule."""

    metrics_of: Callable[[PerItem], dict[str, float | None]]
    is_forget: Callable[[str], bool]
    rule: Rule


def item_values(per_item: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Per-item values as ``results.json`` keeps them: floats to 6 significant digits (the metrics are means of
    hundreds of items, shown to 2 decimals), so a run's file stays small enough to commit."""
    return {k: [float(f"{v:.6g}") if isinstance(v, (int, float)) else v for v in vals] for k, vals in per_item.items()}


def half_metrics(point: Mapping[str, Any], view: View) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(selection-half metrics, report-half metrics) of one point."""
    sel, rep = halves(point["per_item"], view.is_forget, SPLIT_SEED)
    return view.metrics_of(sel), view.metrics_of(rep)


def summarise(curve: Sequence[Mapping[str, Any]], view: View, n_resamples: int = 1000) -> dict[str, Any]:
    """``{"curve": [...], "selected": {...}}``: every point with its settings, cost, metrics (all items,
    selection half, report half) and per-item values (:func:`item_values`); the point
    :func:`ulmr.selection.select` picks on the selection half, its report-half metrics and their 95% bootstrap
    intervals."""
    points, sel_rows = [], []
    for p in curve:
        sel, rep = half_metrics(p, view)
        sel_rows.append(sel)
        points.append({"point": p.get("point", {}), "cost": p.get("cost", {}), "metrics": p["metrics"],
                       "selection_half": sel, "report_half": rep, "seconds": p.get("seconds"),
                       "per_item": item_values(p["per_item"])})
    choice = select(sel_rows, view.rule)
    chosen = points[choice.index]
    _, rep_items = halves(curve[choice.index]["per_item"], view.is_forget, SPLIT_SEED)
    ci = bootstrap_intervals(rep_items, view.metrics_of, n_resamples=n_resamples)
    selected = {**choice.as_dict(), "point": chosen["point"], "cost": chosen["cost"], "metrics": chosen["report_half"],
                "ci95": {k: list(v) if v else None for k, v in ci.items()}}
    if "per_target_points" in curve[choice.index]:  # RWKU: each target's own settings of the point, for seed reruns
        selected["per_target_points"] = curve[choice.index]["per_target_points"]
    return {"curve": points, "selected": selected}


def reference_summary(point: Mapping[str, Any], view: View, n_resamples: int = 1000) -> dict[str, Any]:
    """A one-point model (target, retain, Before): its report-half metrics, their intervals and its per-item values."""
    _, rep_items = halves(point["per_item"], view.is_forget, SPLIT_SEED)
    ci = bootstrap_intervals(rep_items, view.metrics_of, n_resamples=n_resamples)
    return {"metrics": view.metrics_of(rep_items), "ci95": {k: list(v) if v else None for k, v in ci.items()},
            "per_item": item_values(point["per_item"])}


def describe_point(point: Mapping[str, Any]) -> str:
    """'step 20' / 'α 0.4' / '' for a point's settings."""
    p = point.get("point", {})
    if "alpha" in p:
        return f"α {p['alpha']:g}"
    return f"step {p['step']}" if "step" in p else ""


# --------------------------------------------------------------------------- running a method's curve
def method_curve(store: StageStore, stage: str, start: str | Path, forget: Sequence[Any], retain: Sequence[Any] | None,
                 tcfg: TrainConfig, work: Path, evaluate: Evaluate, n_points: int, averaged: bool,
                 only: Mapping[str, Any] | None = None, alphas: Sequence[float] = ALPHAS, recipe: str | None = None):
    """One training run of a method from ``start`` and its curve: with ``averaged`` (ULMR) the α points of the
    trained p_f at ``alphas``, else ``n_points`` points along the run; ``only`` (a selected point's settings,
    for another seed): that point alone, after the same schedule; ``recipe``: the run's
    :func:`~ulmr.benchmarks.common.recipe_key`, checked for every stored point. Returns (points, TrainResult)."""
    if averaged:
        model, tok, res = common.train_model(start, forget, retain, tcfg, work)
        cost = {"steps": res.steps, "train_tokens": res.train_tokens, "train_seconds": round(res.seconds, 1)}
        alphas = [only["alpha"]] if only else alphas
        return alpha_points(store, stage, model, tok, base_weights_dir(str(start)), evaluate, cost, alphas, recipe), res
    cb = StepPoints(store, stage, n_points, evaluate, at=[only["step"]] if only else None, recipe=recipe)
    _, _, res = common.train_model(start, forget, retain, tcfg, work, callbacks=[cb])
    return cb.results, res


def training_record(res, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a table note and results.json say about one training run."""
    return {"steps": res.steps, "seconds": round(res.seconds, 1), "train_tokens": res.train_tokens, "lr": res.lr, **(info or {})}


# --------------------------------------------------------------------------- outputs
def curve_png(path: Path, methods: Mapping[str, Mapping[str, Any]], references: Mapping[str, Mapping[str, float | None]],
              x_key: str, y_key: str, x_label: str, y_label: str, title: str, scale: float = 1.0) -> None:
    """Every method's curve (report half) on the same axes, its selected point ringed; reference models as stars."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, summary in methods.items():
        pts = [(p["report_half"].get(x_key), p["report_half"].get(y_key)) for p in summary["curve"]]
        pts = [(x * scale, y * scale) for x, y in pts if x is not None and y is not None]
        if not pts:
            continue
        (line,) = ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=4, label=name)
        sel = summary["selected"]["metrics"]
        if sel.get(x_key) is not None and sel.get(y_key) is not None:
            ax.scatter([sel[x_key] * scale], [sel[y_key] * scale], s=160, facecolors="none", edgecolors=line.get_color(), zorder=3)
    for name, m in references.items():
        if m.get(x_key) is None or m.get(y_key) is None:
            continue
        ax.scatter([m[x_key] * scale], [m[y_key] * scale], marker="*", s=180, color="black", zorder=4)
        ax.annotate(name, (m[x_key] * scale, m[y_key] * scale), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def interval_row(name: str, ci: Mapping[str, Sequence[float] | None], scale: float, keys: Sequence[str], digits: int = 2) -> str:
    """'lo–hi / lo–hi' for the columns' keys (the CI table's cells)."""
    return " / ".join("-" if ci.get(k) is None else f"{ci[k][0] * scale:.{digits}f}–{ci[k][1] * scale:.{digits}f}" for k in keys)


def curve_rows(references: Mapping[str, Mapping[str, Any]], methods: Mapping[str, Mapping[str, Any]]) -> list[common.Row]:
    """Table rows on the report half: each reference model, then each method at its selected point
    (named with the point; '†' where no point held utility)."""
    rows = [common.Row(name, "reference", dict(r["metrics"])) for name, r in references.items()]
    for name, summary in methods.items():
        sel = summary["selected"]
        mark = "" if sel["utility_holds"] else " †"
        seeds = sel.get("seeds", [0])
        rows.append(common.Row(f"{name} ({describe_point(sel)}){mark}", "method", dict(sel.get("mean", sel["metrics"])),
                               dict(sel.get("spread", {})), len(seeds)))
    return rows


def interval_table(title: str, references: Mapping[str, Mapping[str, Any]], methods: Mapping[str, Mapping[str, Any]],
                   columns: Sequence[common.Column]) -> Table:
    """The 95% bootstrap intervals of the main table's numbers (seed 0's run of each selected point)."""
    named = [(n, r["ci95"]) for n, r in references.items()]
    named += [(f"{n} ({describe_point(s['selected'])})", s["selected"]["ci95"]) for n, s in methods.items()]
    body = [[name] + [interval_row(name, ci, c.scale, c.keys, c.digits) for c in columns] for name, ci in named]
    return Table(f"{title}: 95% bootstrap intervals over items (report half)", ["Model"] + [c.title for c in columns], body, [])


def seed_summary(selected: dict[str, Any], reruns: Sequence[Mapping[str, Any]], view: View) -> dict[str, Any]:
    """``selected`` with ``seeds``, ``per_seed``, ``mean`` and ``spread`` (sample std) of the report-half metrics
    over seed 0 (the curve's point) and ``reruns`` (the same point at the other seeds), and ``per_seed_items``
    (the reruns' per-item values; seed 0's are the curve point's)."""
    rows = [selected["metrics"]] + [half_metrics(r, view)[1] for r in reruns]
    mean, spread = {}, {}
    for k in rows[0]:
        vals = [float(r[k]) for r in rows if r.get(k) is not None and math.isfinite(r[k])]
        mean[k] = statistics.fmean(vals) if vals else None
        spread[k] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {**selected, "seeds": list(range(len(rows))), "per_seed": rows, "mean": mean, "spread": spread,
            "per_seed_items": [item_values(r["per_item"]) for r in reruns]}


# --------------------------------------------------------------------------- a previous run's curves
SEED_FIELDS = ("seeds", "per_seed", "mean", "spread", "per_seed_items")
NOT_COMPARED = ("methods", "out", "seeds", "seed_methods", "curves_from")  # options that may differ from the earlier run
REFERENCE_RTOL = 1e-4  # a reference model evaluated again on another machine moves by float rounding (~1e-7 relative)


@dataclass
class Prior:
    """``--curves-from``: a previous run's seed-0 summaries by method (``curve``, ``selected`` without its seed
    fields, ``training``, ``recipe`` where it was recorded) and its reference rows."""

    path: Path
    methods: dict[str, dict[str, Any]]
    references: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None, settings: Mapping[str, Any]) -> "Prior":
        """The earlier run's results.json, refused with a one-line error when it is not a curves run of the same
        settings (:data:`NOT_COMPARED` aside). No path: an empty prior."""
        if path is None:
            return cls(Path(), {}, {})
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"--curves-from {path}: cannot read it ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
            raise ConfigError(f"--curves-from {path}: not a results.json of the curves protocol (no 'methods')")
        theirs = data.get("settings", {})
        differ = sorted(k for k in set(settings) | set(theirs) if k not in NOT_COMPARED and settings.get(k) != theirs.get(k))
        if differ:
            raise ConfigError(f"--curves-from {path}: run with other settings ({', '.join(differ)}); only "
                              f"{', '.join('--' + k.replace('_', '-') for k in NOT_COMPARED)} may differ")
        methods = {s["method"]: {**s, "selected": {k: v for k, v in s["selected"].items() if k not in SEED_FIELDS}}
                   for s in data["methods"].values()}
        return cls(Path(path), methods, data.get("references", {}))

    def take(self, method: str, recipe: str | None) -> dict[str, Any] | None:
        """``method``'s earlier summary if the run has it under the same recipe (one recorded without a recipe,
        before 2026-12-07, is taken with a warning); None: run the curve."""
        prior = self.methods.get(method)
        if prior is None:
            return None
        if prior.get("recipe") is None:
            log.warning("--curves-from %s: %s recorded no recipe; its curve is taken as it is", self.path, method)
        elif prior["recipe"] != recipe:
            log.warning("--curves-from %s: %s ran under another recipe (a changed default); running its curve again", self.path, method)
            return None
        return prior

    def check_references(self, references: Mapping[str, Mapping[str, Any]]) -> None:
        """Refuse to mix curves whose reference models (the rule's thresholds) came out differently."""
        for name, ref in references.items():
            theirs = self.references.get(name, {}).get("metrics", {})
            for k, v in ref["metrics"].items():
                w = theirs.get(k)
                if v is not None and w is not None and abs(v - w) > REFERENCE_RTOL * max(1.0, abs(v)):
                    raise ConfigError(f"--curves-from {self.path}: reference '{name}' {k} was {w:.6g}, now {v:.6g}; "
                                      "its curves rest on another reference: rerun them instead")
