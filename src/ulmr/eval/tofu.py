"""TOFU evaluation: Forget / Retain / Real Authors / World Facts x {ROUGE-L recall, Probability, Truth Ratio},
Forget Quality (with a reference run of the retain model) and Model Utility. Formulas: docs of
:mod:`ulmr.metrics.truth_ratio` and :mod:`ulmr.metrics.probability`; definitions: benchmarks.md.

Per set: R = mean ROUGE-L recall of the greedy generation; P = mean p̄(gold) on Forget/Retain and
mean p̄(correct)/(p̄(correct)+Σp̄(wrong)) on Real Authors/World Facts; TR from the raw per-item ratio
(paraphrased answer on Forget/Retain, correct answer on RA/WF) in the forget form on Forget and the retain
form elsewhere. All numbers are fractions in [0, 1] (the table shows %).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data.tofu import TofuItem, load_tofu
from ..errors import DataError
from ..metrics.probability import option_probability
from ..metrics.truth_ratio import forget_quality, forget_truth_ratio, model_utility, retain_truth_ratio
from .qa import QAItem, mean, run_items
from .report import Table, fmt, slash

log = logging.getLogger(__name__)

SETS = ("forget", "retain", "real_authors", "world_facts")
TITLES = {"forget": "Forget", "retain": "Retain", "real_authors": "Real Authors", "world_facts": "World Facts"}
OPTION_SETS = ("real_authors", "world_facts")


def _set_metrics(name: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["truth_ratio_raw"] for r in recs]
    if name in OPTION_SETS:
        for r in recs:
            r["option_prob"] = option_probability(r["answer_nll"], r["perturbed_nlls"])
        prob = mean([r["option_prob"] for r in recs])
    else:
        prob = mean([r["answer_prob"] for r in recs])
    tr = forget_truth_ratio(ratios) if name == "forget" else retain_truth_ratio(ratios)
    return {"R": mean([r["rougeL_recall"] for r in recs]), "P": prob, "TR": tr, "n": len(recs)}


def per_item_values(items: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    """``"<set>:R"``, ``"<set>:P"``, ``"<set>:ratio"`` -> one value per item (the inputs of :func:`metrics_from_items`)."""
    out: dict[str, list[float]] = {}
    for n in SETS:
        recs = items[n]
        out[f"{n}:R"] = [float(r["rougeL_recall"]) for r in recs]
        out[f"{n}:P"] = [float(r["option_prob"] if n in OPTION_SETS else r["answer_prob"]) for r in recs]
        out[f"{n}:ratio"] = [float(r["truth_ratio_raw"]) for r in recs]
    return out


def metrics_from_items(values: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
    """Flat '<set>.R/P/TR', 'FQ', 'MU' from per-item values (any subset of the items); FQ needs the
    reference (retain) model's raw ratios of the same forget items as ``"forget:ref_ratio"``, else None."""
    sets = {}
    for n in SETS:
        ratios = values[f"{n}:ratio"]
        sets[n] = {"R": mean(values[f"{n}:R"]), "P": mean(values[f"{n}:P"]),
                   "TR": forget_truth_ratio(ratios) if n == "forget" else retain_truth_ratio(ratios)}
    out: dict[str, float | None] = {f"{n}.{k}": sets[n][k] for n in SETS for k in ("R", "P", "TR")}
    ref = values.get("forget:ref_ratio")
    out["FQ"] = forget_quality(values["forget:ratio"], ref) if ref is not None else None
    out["MU"] = model_utility([sets[n][k] for n in ("retain", "real_authors", "world_facts") for k in ("P", "R", "TR")])
    return out


def reference_ratios(path: str | Path, forget_split: str) -> list[float]:
    """Raw forget truth ratios from the per-item JSON of an earlier ``ulmr eval tofu`` run (the retain model)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (--reference expects per_item.json of a retain-model run)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from e
    if not isinstance(data, dict) or not isinstance(data.get("items", {}).get("forget"), list):
        raise DataError(f"{path}: missing field 'items.forget' (not a per-item JSON of 'ulmr eval tofu')")
    if data.get("forget_split") not in (None, forget_split):
        raise DataError(f"{path}: reference was run on {data.get('forget_split')}, not {forget_split}")
    try:
        return [float(r["truth_ratio_raw"]) for r in data["items"]["forget"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: an item of 'items.forget' lacks a numeric 'truth_ratio_raw'") from e


def evaluate_tofu(model, tokenizer, data: str | Path | dict[str, list[TofuItem]], forget_split: str = "forget01",
                  limits: dict[str, int | None] | None = None, max_new_tokens: int = 200, batch_size: int = 16,
                  reference: str | Path | list[float] | None = None) -> dict[str, Any]:
    """Run TOFU in-process. ``data``: directory / hub id, or already loaded sets; ``limits``: first N items per
    set name; ``reference``: per-item JSON path of the retain model (or its raw forget ratios) for FQ.

    Returns {"benchmark", "forget_split", "sets": {name: {"R", "P", "TR", "n"}}, "forget_quality",
    "model_utility", "items": {name: [per-item dicts]}}.
    """
    sets = data if isinstance(data, dict) else load_tofu(data, forget_split)
    limits = limits or {}
    sets = {n: sets[n][: limits.get(n) or None] for n in SETS}
    flat = [QAItem(it.question, it.answer, it.paraphrased, it.perturbed) for n in SETS for it in sets[n]]
    recs = run_items(model, tokenizer, flat, max_new_tokens, batch_size, label="TOFU")
    items, pos = {}, 0
    for n in SETS:
        items[n] = recs[pos : pos + len(sets[n])]
        pos += len(sets[n])
    metrics = {n: _set_metrics(n, items[n]) for n in SETS}
    fq = None
    if reference is not None:
        ref = reference if isinstance(reference, list) else reference_ratios(reference, forget_split)
        if len(ref) != metrics["forget"]["n"]:
            log.warning("forget quality: %d model items vs %d reference items", metrics["forget"]["n"], len(ref))
        fq = forget_quality([r["truth_ratio_raw"] for r in items["forget"]], ref)
    mu = model_utility([metrics[n][k] for n in ("retain", "real_authors", "world_facts") for k in ("P", "R", "TR")])
    return {"benchmark": "tofu", "forget_split": forget_split, "max_new_tokens": max_new_tokens, "sets": metrics,
            "forget_quality": fq, "model_utility": mu, "items": items}


def tofu_table(result: dict[str, Any], model_name: str) -> Table:
    """The seed paper's layout: one row per model, 'R / P / TR' (%) per set, then FQ and MU."""
    s = result["sets"]
    row = [model_name] + [slash([s[n]["R"], s[n]["P"], s[n]["TR"]], 100) for n in SETS]
    row += [fmt(result["forget_quality"], digits=4), fmt(result["model_utility"], 100)]
    counts = ", ".join(f"{TITLES[n]} {s[n]['n']}" for n in SETS)
    return Table(
        f"TOFU ({result['forget_split']})",
        ["Model"] + [f"{TITLES[n]} R / P / TR (%)" for n in SETS] + ["FQ", "MU (%)"],
        [row],
        [f"items: {counts}; greedy generation, at most {result['max_new_tokens']} new tokens.",
         "FQ = KS-test p-value vs the retain model's raw forget truth ratios ('-' without --reference); depends on the item count.",
         "TR: Forget mean(min(R,1/R)); others mean(max(0,1-R)). MU = harmonic mean of Retain/RA/WF x R/P/TR."],
    )


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the per-item records."""
    return {k: v for k, v in result.items() if k != "items"}
