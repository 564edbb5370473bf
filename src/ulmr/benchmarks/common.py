"""Protocol pieces shared by ``ulmr bench tofu`` and ``ulmr bench rwku``.

- settings keys: a short hash of the settings that determine a result (cache keys, stage names);
- :func:`cached_model`: a trained model saved once under the cache dir, keyed by its settings, reused later;
- :class:`StageStore`: one JSON result file per finished stage; a rerun skips every stage that has its file;
- :func:`train_model` / :func:`dfr_rows`: one unlearning run through the stage functions of ``ulmr unlearn``
  (:mod:`ulmr.pipeline`: generation, training, averaging);
- :func:`run_jobs` + :func:`aggregate`: the per-method, per-seed loop and its mean / spread;
- :func:`write_outputs`: results.json, results.csv, results.md and the PNG scatter, all written atomically.

Only what the next step needs stays on disk: cached target/retain models and small JSON stage results;
unlearned models live in memory until they are evaluated.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Optional, Sequence

from pydantic import BaseModel, Field

from ..atomic import atomic_dir, write_json, write_text
from ..config import BackendConfig, GenerateConfig, TrainConfig
from ..eval.report import Table, fmt, markdown, print_table
from ..methods.base import RetainLoss
from ..methods.registry import display_name, method_class
from ..methods.ulmr import ULMR
from ..models import load, save_model
from ..pipeline import finish_weights, make_backend, run_generation
from ..progress import console
from ..train import train_unlearn

log = logging.getLogger("ulmr.bench")

MODEL_RECORD = "bench_model.json"  # written last inside the atomic model dir: its presence marks a finished model
TRAINED: list[str] = []  # labels of the models trained by this process (tests assert cache reuse with it)


# --------------------------------------------------------------------------- keys and processes
def settings_key(settings: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``settings`` as canonical JSON."""
    text = json.dumps(settings, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def files_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the contents of ``paths`` (the data part of a cache key)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


PROMPTS_DIR = Path(__file__).resolve().parents[1] / "generate" / "prompts"


def recipe_key(tcfg: TrainConfig) -> str:
    """A digest of what one unlearning run's result depends on beyond the bench's own settings: the method's
    defaults (:meth:`~ulmr.methods.base.Method.recipe`), the resolved training options and, for a method that
    generates D_fr, the generation defaults and prompt files. :meth:`StageStore.run` reruns a stage stored
    under another recipe, so a changed default never reuses a stale result."""
    cls = method_class(tcfg.method)
    parts: dict[str, Any] = {"method": cls.recipe(), "train": tcfg.model_dump(mode="json")}
    if cls.generates_dfr:
        parts |= {"generation": GenerateConfig().model_dump(mode="json"), "prompts": files_digest(PROMPTS_DIR.glob("*"))}
    return settings_key(parts)


def is_main_process() -> bool:
    """True outside ``accelerate launch`` / torchrun and on rank 0 inside it."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process when running distributed (rank 0 writes, the others then read)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_methods(methods: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """Validate a bench's method list (pydantic validator body): known names, at least one, no repeats."""
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise ValueError(f"unknown method '{bad[0]}' (choose from {', '.join(allowed)})")
    if not methods:
        raise ValueError("no methods given")
    return list(dict.fromkeys(methods))


def check_seed_methods(seed_methods: Sequence[str] | None, methods: Sequence[str], protocol: str | None) -> list[str] | None:
    """Validate ``--seed-methods`` against ``--methods`` (pydantic validator body); None means every method."""
    if seed_methods is None:
        return None
    if protocol != "curves":
        raise ValueError("applies to the curves protocol only (equal-steps runs every method at every seed)")
    bad = [m for m in seed_methods if m not in methods]
    if bad:
        raise ValueError(f"'{bad[0]}' is not among the benched methods ({', '.join(methods)})")
    return list(dict.fromkeys(seed_methods))


def reruns_seeds(seeds: int, seed_methods: Sequence[str] | None, method: str) -> bool:
    """Whether the curves protocol reruns ``method``'s selected point at seeds 1..N-1."""
    return seeds > 1 and (seed_methods is None or method in seed_methods)


def seeds_note(seeds: int, seed_methods: Sequence[str] | None) -> str:
    """The table note on seeds: how many, and for which methods when not all."""
    if seeds == 1 or seed_methods is None:
        return f"Seeds {seeds}."
    names = ", ".join(display_name(m) for m in seed_methods) or "none"
    return f"Seeds {seeds} for {names} (the selected point rerun at seeds 1..{seeds - 1}); the other methods seed 0 only."


# --------------------------------------------------------------------------- stages
class StageStore:
    """Finished stages as ``<root>/<name>.json``; :meth:`run` returns the stored result instead of rerunning."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.timings: dict[str, dict[str, Any]] = {}

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        p = self.path(name)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # a torn file cannot exist (atomic writes), but never trust it
            return None

    def run(self, name: str, fn: Callable[[], dict[str, Any]], recipe: str | None = None) -> dict[str, Any]:
        """The result of stage ``name``: stored, or computed by ``fn`` and stored (with its wall time). With
        ``recipe`` (:func:`recipe_key`) a result stored under another recipe is computed again; one stored
        without a recipe (before 2026-12-06) is reused."""
        done = self.get(name)
        if done is not None and recipe is not None and done.get("recipe", recipe) != recipe:
            log.warning("stage %s: stored under another method recipe (a changed default): running it again", name)
            done = None
        if done is not None:
            log.info("stage %s: finished earlier, reusing %s", name, self.path(name))
            self.timings[name] = {"seconds": done.get("seconds"), "reused": True}
            return done
        log.info("stage %s: running", name)
        t = time.time()
        result = fn()
        result["seconds"] = round(time.time() - t, 1)
        if recipe is not None:
            result["recipe"] = recipe
        if is_main_process():
            write_json(self.path(name), result)
        self.timings[name] = {"seconds": result["seconds"], "reused": False}
        return result


# --------------------------------------------------------------------------- models
def cached_model(root: Path, label: str, settings: Mapping[str, Any], build: Callable[[Path], tuple[Any, Any, dict]],
                 timings: dict[str, dict[str, Any]] | None = None) -> Path:
    """The directory of model ``label`` trained with ``settings``: ``<root>/<label>-<key>``.

    Reused when it exists (logged); otherwise ``build(work_dir) -> (model, tokenizer, info)`` trains it, it is
    saved in one rename with ``bench_model.json`` (settings, info), and ``work_dir`` (checkpoints) is deleted.
    """

    final = Path(root) / f"{label}-{settings_key(settings)}"
    if (final / MODEL_RECORD).exists():
        rec = json.loads((final / MODEL_RECORD).read_text(encoding="utf-8"))
        console.print(f"[green]reusing cached {label} model[/green] {final} (trained {rec.get('created', '?')})", highlight=False)
        if timings is not None:
            timings[f"{label}_model"] = {"seconds": rec.get("info", {}).get("seconds"), "reused": True}
        return final
    work = final.parent / f".{final.name}.work"
    console.print(f"training the {label} model -> {final}", highlight=False)
    t = time.time()
    model, tok, info = build(work)
    info = {**info, "seconds": round(time.time() - t, 1)}
    if is_main_process():
        with atomic_dir(final, overwrite=True) as tmp:
            save_model(model, tok, tmp)
            write_json(tmp / MODEL_RECORD, {"label": label, "settings": dict(settings), "info": info,
                                            "created": time.strftime("%Y-%m-%d %H:%M:%S")})
        shutil.rmtree(work, ignore_errors=True)
    barrier()
    TRAINED.append(label)
    if timings is not None:
        timings[f"{label}_model"] = {"seconds": info["seconds"], "reused": False}
    return final


def train_model(start: str | Path, forget: Sequence[Any], retain: Sequence[Any] | None, tcfg: TrainConfig, work: Path,
                alpha: float | None = None, keep_work: bool = False, callbacks: list | None = None):
    """Load ``start``, train it with ``tcfg`` and, with ``alpha``, average it back towards ``start``
    (p_u = α·p_f + (1−α)·p_θ): the training and averaging stages of ``ulmr unlearn``. ``callbacks``: extra
    Trainer callbacks (a curve's points). Returns (model in eval mode, tokenizer, TrainResult)."""

    model, tok = load(str(start))
    res = train_unlearn(model, tok, forget, retain, tcfg, work, resume=True, callbacks=callbacks)
    model = finish_weights(res.model, alpha, str(start), tcfg.lora)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return model.eval(), tok, res


def dfr_rows(records: Sequence[Any], model, tokenizer, work: Path, max_new_tokens: int = 64,
             batch_size: int = 16, seed: int = 0, filters: str = "full") -> tuple[list[dict], dict[str, Any]]:
    """D_fr for ``records`` (QARecords) with ``model`` as the generator: the generation stage of ``ulmr unlearn``
    at its default options, ``seed`` and ``filters`` (a method's ``generation_filters``), resumable through
    ``work/generation_cache.jsonl`` (one ``work`` per method and seed).

    Returns the rows and what to report about them: row count and how many rewrites / negative responses fell
    back to templates (a generator that no longer follows the prompts makes D_fr all templates)."""

    gen = GenerateConfig(seed=seed, max_new_tokens=max_new_tokens, gen_batch_size=batch_size, filters=filters)
    res = run_generation(gen, list(records), make_backend(BackendConfig(), model, tokenizer), work)
    n_items, k = len(records), gen.num_rewrites
    info = {"d_fr_rows": len(res.rows), "fallback_rewrites": f"{res.stats['fallback_rewrites']}/{n_items * k}",
            "fallback_negatives": f"{res.stats['fallback_negatives']}/{n_items * (k + 1)}"}
    return res.rows, info


class MethodDataOptions(BaseModel):
    """The options both benches share that change what the unlearning runs train on beside the forget side."""

    anchor: Literal["method", "none", "all"] = Field(
        "method", description="the built-in anchor (the base model's answers to general questions, minus those that name what "
        "the forget set or the evaluation items name) beside the retain side: for the methods whose recipe has it (method: "
        "ULMR), for none, or for all that train with a retain side")
    retain_loss: Optional[RetainLoss] = Field(
        None, description="ULMR's retain term: NLL of the retain answers (default) or KL to the model before unlearning at their positions")


def takes_anchor(anchor: str, method: str) -> bool:
    """Whether ``method``'s unlearning runs train on the anchor beside their retain side under ``--anchor anchor``."""
    cls = method_class(method)
    return cls.retain != "never" and (anchor == "all" or (anchor == "method" and cls.anchor_with_retain))


def retain_loss_for(retain_loss: str | None, method: str) -> str | None:
    """A bench's ``--retain-loss`` for ``method``: the given form where the method has it, else None (its own)."""
    return retain_loss if retain_loss in method_class(method).retain_losses else None


def ulmr_term(answer_weight: float | None, retain_loss: str | None = None) -> str:
    """How a table states ULMR's answer term (and a retain term other than the default NLL)."""

    gamma = ULMR.default_answer_weight if answer_weight is None else answer_weight
    text = f"answer term γ {gamma:g}" if gamma else "no answer term (the paper's SFT)"
    return text + (f", retain term {retain_loss.upper()}" if retain_loss and retain_loss != ULMR.retain_losses[0] else "")


def dfr_note(label: str, trainings: Sequence[dict[str, Any] | None]) -> str | None:
    """A table note on a method's D_fr: rows and template fallbacks per run, equal runs written once with their
    count (None when no run reported them)."""
    parts = Counter(f"{t['d_fr_rows']} rows, template fallbacks: rewrites {t['fallback_rewrites']}, negatives {t['fallback_negatives']}"
                    for t in trainings if t and "fallback_rewrites" in t)
    text = "; ".join(p if n == 1 else f"{p} ({n} runs)" for p, n in parts.items())
    return f"{label} D_fr (per run): {text}." if parts else None


def dfr_notes(methods: Sequence[str], done: Mapping[str, Sequence[dict[str, Any]]]) -> list[str]:
    """:func:`dfr_note` for every finished method that trains on a generated D_fr."""
    notes = [dfr_note(display_name(m), [r.get("training") for r in done[m]])
             for m in methods if m in done and method_class(m).generates_dfr]
    return [n for n in notes if n]


# --------------------------------------------------------------------------- the method loop
@dataclass
class Job:
    """One unlearning run: stage name, the table row it belongs to, and ``run() -> flat metrics``."""

    stage: str
    label: str
    seed: int
    run: Callable[[], dict[str, Any]]
    recipe: str | None = None  # recipe_key of the run: a stage stored under another one is rerun


def run_jobs(store: StageStore, jobs: Sequence[Job]) -> dict[str, list[dict[str, Any]]]:
    """Run (or reuse) every job in order; the stage results grouped by row label."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, job in enumerate(jobs, 1):
        console.print(f"[bold]\\[{i}/{len(jobs)}][/bold] {job.stage}", highlight=False)
        out.setdefault(job.label, []).append(store.run(job.stage, job.run, job.recipe))
    return out


@dataclass
class Row:
    """One table row: the mean of each metric over seeds, its spread (sample std; 0 with one seed)."""

    name: str
    role: str  # "reference" (target / retain / before) or "method"
    metrics: dict[str, float | None]
    spread: dict[str, float] = field(default_factory=dict)
    seeds: int = 1
    info: dict[str, Any] = field(default_factory=dict)


def aggregate(name: str, role: str, runs: Sequence[Mapping[str, Any]], info: dict[str, Any] | None = None) -> Row:
    """A :class:`Row` from per-seed results (each with a ``metrics`` dict)."""
    keys = list(runs[0]["metrics"])
    means: dict[str, float | None] = {}
    spread: dict[str, float] = {}
    for k in keys:
        vals = [r["metrics"].get(k) for r in runs]
        nums = [float(v) for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
        means[k] = statistics.fmean(nums) if nums else None
        spread[k] = statistics.stdev(nums) if len(nums) > 1 else 0.0
    return Row(name, role, means, spread, len(runs), info or {})


def method_rows(methods: Sequence[str], runs_of: Callable[[str], Sequence[Mapping[str, Any]]]) -> list[Row]:
    """One table row per method, named by its display name, from ``runs_of(method)`` (its per-seed results)."""
    return [aggregate(display_name(m), "method", runs_of(m)) for m in methods]


def mean_metrics(results: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Key-wise mean of flat metric dicts (averaging over targets)."""
    out: dict[str, float | None] = {}
    for k in results[0]:
        nums = [float(r[k]) for r in results if r.get(k) is not None]
        out[k] = statistics.fmean(nums) if nums else None
    return out


# --------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class Column:
    """A table column: several metric keys shown as 'a / b / c', ``scale`` x (100 turns fractions into %)."""

    title: str
    keys: tuple[str, ...]
    scale: float = 1.0
    digits: int = 2


def _cell(row: Row, col: Column, spread: bool) -> str:
    src = row.spread if spread else row.metrics
    return " / ".join(fmt(src.get(k), col.scale, col.digits) for k in col.keys)


def bench_table(title: str, rows: Sequence[Row], columns: Sequence[Column], notes: Sequence[str], spread: bool = False) -> Table:
    """The seed-paper layout: one row per model, one 'a / b / c' cell per column group."""
    body = [[r.name + (f" ({r.seeds} seeds)" if r.seeds > 1 and not spread else "")] + [_cell(r, c, spread) for c in columns]
            for r in rows]
    return Table(title, ["Model"] + [c.title for c in columns], body, list(notes))


def csv_text(rows: Sequence[Row]) -> str:
    """One line per row: name, role, seeds, each metric and its spread (``<key>_std``)."""
    keys = list(dict.fromkeys(k for r in rows for k in r.metrics))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "role", "seeds"] + [c for k in keys for c in (k, f"{k}_std")])
    for r in rows:
        vals = []
        for k in keys:
            v, s = r.metrics.get(k), r.spread.get(k)
            vals += ["" if v is None else f"{v:.6g}", "" if s is None else f"{s:.6g}"]
        w.writerow([r.name, r.role, r.seeds] + vals)
    return buf.getvalue()


@dataclass(frozen=True)
class Scatter:
    """The PNG: ``x_key`` against ``y_key``, one point per row, reference rows as labelled stars."""

    x_key: str
    y_key: str
    x_label: str
    y_label: str
    title: str
    scale: float = 1.0


def scatter_png(path: Path, rows: Sequence[Row], spec: Scatter) -> None:
    """Write the scatter plot atomically (rendered to memory, then renamed into place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for r in rows:
        x, y = r.metrics.get(spec.x_key), r.metrics.get(spec.y_key)
        if x is None or y is None:
            continue
        x, y = x * spec.scale, y * spec.scale
        ref = r.role == "reference"
        ax.scatter([x], [y], marker="*" if ref else "o", s=160 if ref else 50, color="black" if ref else None, zorder=3)
        ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(spec.y_label)
    ax.set_title(spec.title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def timing_lines(timings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """'stage: 12.3 s' lines, marking stages reused from an earlier run."""
    lines = []
    for name, t in timings.items():
        secs = t.get("seconds")
        took = "?" if secs is None else f"{secs:.0f} s"
        lines.append(f"{name}: {took}" + (" (reused from an earlier run)" if t.get("reused") else ""))
    return lines


def write_outputs(out: Path, payload: dict[str, Any], rows: Sequence[Row], columns: Sequence[Column], title: str,
                  notes: Sequence[str], scatter: Scatter | Callable[[Path], None], show: bool = True,
                  extra: Sequence[Table] = ()) -> dict[str, Path]:
    """results.json (payload + rows), results.csv, results.md (table, ``extra`` tables, spread table with several
    seeds, stage times) and results.png (a :class:`Scatter` of the rows, or ``scatter(path)`` draws it) into
    ``out``; prints the tables."""
    out = Path(out)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "results.md", "png": out / "results.png"}
    if not is_main_process():
        return paths
    table = bench_table(title, rows, columns, notes)
    md = markdown(table) + "".join("\n" + markdown(t) for t in extra)
    if any(r.seeds > 1 for r in rows):
        md += "\n" + markdown(bench_table(f"{title}: spread (sample std over seeds)", rows, columns, [], spread=True))
    timings = payload.get("timings", {})
    if timings:
        md += "\n### Wall time per stage\n\n" + "".join(f"- {line}\n" for line in timing_lines(timings))
    write_json(paths["json"], {**payload, "rows": [asdict(r) for r in rows]})
    write_text(paths["csv"], csv_text(rows))
    write_text(paths["markdown"], md)
    if isinstance(scatter, Scatter):
        scatter_png(paths["png"], rows, scatter)
    else:
        scatter(paths["png"])
    if show:
        print_table(table)
        for t in extra:
            print_table(t)
        console.print(f"results written to {out}", highlight=False)
    return paths
