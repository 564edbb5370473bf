"""The model card (``README.md``) of every model directory ulmr saves, built with ``huggingface_hub``.

The card carries the Hub's metadata (``base_model``, ``library_name``, ``tags``, the base model's ``license``
when its own card or package states one) and says what made the model: the method and its settings, the
forget set as a SHA-256 and an item count only (a few of its questions only when asked), the before/after
figures the run measured, and the ``ulmr verify`` summary when it ran. Nothing else of the forget set.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Sequence

from huggingface_hub import ModelCard, ModelCardData

from .atomic import write_text
from .models import EMBEDDED_ALIAS, EMBEDDED_PACKAGE
from .paths import RECORDS_SUFFIX
from .version import __version__

CARD_FILE = "README.md"
TAGS = ["unlearning", "ulmr"]
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the embedded GGUF was quantised from
# Settings shown on the card: the method's knobs, never a path (forget, retain, probe, out).
CARD_SETTINGS = ("method", "alpha", "epochs", "lr", "max_steps", "batch_size", "grad_accum", "retain_weight", "answer_weight",
                 "answer_source", "beta", "anchor", "num_rewrites", "mode", "temperature", "lora", "lora_r", "seed")


def hub_base_model(spec: str) -> str:
    """The card's ``base_model``: a Hub id as given, the embedded model's Hub id, else a local path's last name."""
    if spec == EMBEDDED_ALIAS:
        return EMBEDDED_HUB_ID
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return path.resolve().name if path.exists() else path.name
    return spec


def base_license(spec: str, base_dir: str | Path | None = None) -> str | None:
    """The base model's license: the ``license`` of its own card (``README.md`` in its local directory), the
    embedded model's package license, else None (no network access)."""
    for d in (spec, base_dir):
        card = Path(d).expanduser() / CARD_FILE if d else None
        if card is not None and card.is_file():
            try:
                lic = ModelCard.load(card, ignore_metadata_errors=True).data.license
            except Exception:  # a base card that does not parse gives no license, not a failed save
                lic = None
            if lic:
                return str(lic)
    if spec == EMBEDDED_ALIAS:
        try:
            lic = importlib.metadata.metadata(EMBEDDED_PACKAGE).get("License")
        except importlib.metadata.PackageNotFoundError:
            lic = None
        return lic.lower() if lic else None
    return None


def card_data(base_spec: str, base_dir: str | Path | None = None) -> ModelCardData:
    """The YAML metadata block of a card."""
    lic = base_license(base_spec, base_dir)
    return ModelCardData(base_model=hub_base_model(base_spec), library_name="transformers", tags=list(TAGS),
                         **({"license": lic} if lic else {}))


def _settings_lines(record: dict[str, Any], base_model: str) -> list[str]:
    settings, training = record.get("settings") or {}, record.get("training") or {}
    shown = {k: settings[k] for k in CARD_SETTINGS if settings.get(k) is not None}
    shown["alpha"] = record.get("alpha")
    lines = ["## How it was made", "", f"Made with ulmr {record.get('versions', {}).get('ulmr', __version__)}, "
             f"method `{settings.get('method')}`, from `{base_model}`.", "",
             "| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in shown.items()]]
    if training:
        lines += [f"| learning rate used | {training.get('lr')} |", f"| optimizer steps | {training.get('steps')} |"]
    return lines + [""]


def _forget_lines(record: dict[str, Any], examples: Sequence[str] | None) -> list[str]:
    forget = (record.get("inputs") or {}).get("forget") or {}
    counts = record.get("counts") or {}
    lines = ["## Forget set", "",
             f"{forget.get('items', counts.get('forget_items'))} items were forgotten (forget file SHA-256 "
             f"`{forget.get('sha256')}`). Their content is not part of this directory.", ""]
    if counts:
        lines += [", ".join(f"{k}: {v}" for k, v in counts.items() if isinstance(v, (int, float))), ""]
    if examples:
        lines += ["Example questions (included on request, `--card-include-examples`):", "", *[f"- {q}" for q in examples], ""]
    return lines


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def _figures_lines(record: dict[str, Any]) -> list[str]:
    """Before (α = 0, the base) and after (the chosen α) from the ``--alpha auto`` sweep, when the run made one."""
    auto = record.get("alpha_auto") or {}
    curve = {p["alpha"]: p for p in auto.get("curve") or []}
    before, after = curve.get(0.0), curve.get(auto.get("chosen"))
    if not (before and after):
        return []
    keys = [k for k in before if k != "alpha"]
    return ["## Before / after (held-out probes, `--alpha auto` sweep)", "", f"Rule: {auto.get('rule')}", "",
            "| measure | base (α = 0) | this model (α = " + f"{auto['chosen']:g}) |", "|---|---|---|",
            *[f"| {k} | {_num(before[k])} | {_num(after[k])} |" for k in keys], ""]


def _verify_lines(summary: dict[str, Any] | None) -> list[str]:
    """The ``ulmr verify`` verdicts and per-condition figures (numbers only, no item text)."""
    if not summary:
        return []
    passed = summary.get("passed")
    word = "INCONCLUSIVE" if passed is None else ("PASS" if passed else "FAIL")
    lines = ["## ulmr verify", "", f"Overall: **{word}**; checks: " + ", ".join(f"{k} {v}" for k, v in (summary.get("checks") or {}).items()), "",
             "| check | condition | n | base ROUGE-L | unlearned ROUGE-L | recovery (ROUGE-L) | recovery (prob) | passed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.get("rows") or []:
        rec, prob = ("n/a" if r.get(k) is None else _num(r[k]) for k in ("recovery", "prob_recovery"))
        lines.append(f"| {r['check']} | {r['condition']} | {r['n']} | {_num(r['base_rouge'])} | {_num(r['unlearned_rouge'])} | {rec} | {prob} "
                     f"| {r['passed']} |")
    ref = summary.get("over_refusal") or {}
    if ref:
        lines += ["", f"Over-refusal: refusal rate {ref.get('base_rate')} (base) -> {ref.get('unlearned_rate')} (unlearned), passed {ref.get('passed')}."]
    return lines + [""]


def unlearn_card(name: str, record: dict[str, Any], examples: Sequence[str] | None = None,
                 verify: dict[str, Any] | None = None) -> ModelCard:
    """The card of an ``ulmr unlearn`` / ``ulmr train`` output from its run record; ``examples``: forget
    questions to show (only with ``--card-include-examples``); ``verify``: the ``ulmr verify`` summary."""
    model = (record.get("inputs") or {}).get("model") or {}
    data = card_data(str(model.get("start") or model.get("spec") or ""), model.get("dir"))  # start: where the weights came from
    kind = "averaged with the base model" if record.get("alpha") is not None else "fine-tuned (not averaged)"
    body = [f"# {name}", "", f"An unlearned model ({kind}) made by ulmr from `{data.base_model}`: it was trained to forget a set "
            "of question-answer items while keeping the rest of its knowledge.", "",
            *_settings_lines(record, str(data.base_model)), *_forget_lines(record, examples), *_figures_lines(record), *_verify_lines(verify),
            "## Run records", "", f"The generated training rows, held-out probes, full run record and verify reports stay beside "
            f"this directory, in `{name}{RECORDS_SUFFIX}/`, on the machine that made it; they are not part of the model. "
            "`ulmr_run.json` here keeps only hashes and counts of the forget set.", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def merge_card(name: str, base: str, alpha: float, base_dir: str | Path | None = None) -> ModelCard:
    """The card of an ``ulmr merge`` output: p_u = α·p_f + (1−α)·p_θ."""
    data = card_data(base, base_dir)
    body = [f"# {name}", "", f"Parameters averaged by `ulmr merge` (ulmr {__version__}): p_u = α·p_f + (1−α)·p_θ with "
            f"α = {alpha:g}, p_θ = `{data.base_model}` and p_f a fine-tuned (unlearning) copy of it.", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def save_card(card: ModelCard, directory: str | Path) -> Path:
    """Write ``card`` as ``directory/README.md``, atomically; returns the path."""
    path = Path(directory) / CARD_FILE
    write_text(path, str(card))
    return path
