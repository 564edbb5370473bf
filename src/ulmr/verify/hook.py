"""Glue to ``ulmr unlearn``: read a run's settings, and verify a run's output right after it is saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.records import load_qa
from ..errors import DataError
from ..paths import find_run_file, records_dir_for
from .run import verify

RUN_RECORD = "ulmr_run.json"
VERIFY_SUBDIR = "verify"


def run_settings(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``settings`` of an ``ulmr unlearn`` output directory (model, forget, retain, fields...), or None.

    Read from the full run record in ``<model_dir>.records``; a model directory without it (records removed,
    or a copy from elsewhere) has a public record whose forget path is None."""
    path = find_run_file(model_dir, RUN_RECORD)
    if path is None:
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except (json.JSONDecodeError, AttributeError) as e:
        raise DataError(f"{path}: not a valid run record ({e})") from e
    return settings if isinstance(settings, dict) else None


def run_verify_after_unlearn(out_dir: Path, cfg, **options: Any) -> dict[str, Any]:
    """Verify the model ``ulmr unlearn`` just saved in ``out_dir``; the report (which names forget items) goes
    to the run's records, ``<out_dir>.records/verify``, never into the model directory.

    For the pipeline's ``--verify`` flag: call it after the output directory is in place, with the run's
    :class:`~ulmr.config.UnlearnConfig`. The base is ``cfg.model``; the forget set is ``cfg.forget`` read with
    the run's field names; over-refusal uses ``cfg.retain`` (else the built-in anchor); paraphrases come from
    ``cfg.probe``, else the run's ``probe.jsonl``, else the base model's rewrites. ``options`` are
    :class:`~ulmr.verify.config.VerifyConfig` fields (e.g. ``relearn_steps=10``). The model files are not
    changed. Returns the summary (also in ``<out_dir>.records/verify/verify.json``).
    """

    out_dir = Path(out_dir)
    forget = load_qa(cfg.forget, cfg.question_field, cfg.answer_field)
    retain = load_qa(cfg.retain, cfg.question_field, cfg.answer_field) if cfg.retain else None
    return verify(out_dir, cfg.model, forget, retain=retain, probe=getattr(cfg, "probe", None),
                  out=records_dir_for(out_dir) / VERIFY_SUBDIR, **options)
