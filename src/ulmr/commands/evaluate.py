"""``ulmr eval tofu | rwku | qa``: thin wrappers around :mod:`ulmr.eval` that load the model and write reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from .common import validated

eval_app = typer.Typer(help="Evaluate a model: TOFU, RWKU, or your own QA files.", no_args_is_help=True)

MODEL = typer.Option("smollm2-135m", "--model", "-m", help="Hugging Face id, local HF directory, .gguf file, or 'smollm2-135m' (embedded).")
BATCH = typer.Option(16, "--batch-size", help="Batch size of generation and scoring.")
OUT = typer.Option(None, "--out", "-o", help="Output directory (default: ./eval-out/<benchmark>-<model name>).")
TRC = typer.Option(False, help="Allow custom model code from the hub (off by default).")


def _model_name(spec: str) -> str:
    name = Path(spec.rstrip("/")).name or spec
    return re.sub(r"[^\w.-]+", "_", name.removesuffix(".gguf"))


def _load(spec: str, trust_remote_code: bool):
    from ..models import default_device, load  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    return load(spec, trust_remote_code=trust_remote_code, device=default_device())


def _out(out: Optional[Path], bench: str, model: str) -> Path:
    return out or Path("eval-out") / f"{bench}-{_model_name(model)}"


def _options(**values):
    """The command's bounded options, validated (:class:`ulmr.config.EvalOptions`) before any data or model loads."""
    from ..config import EvalOptions  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    return validated(EvalOptions, **values)


@eval_app.command("tofu")
def tofu_cmd(
    model: str = MODEL,
    data: str = typer.Option(..., "--data", "-d", help="TOFU directory (forgetXX_perturbed.jsonl, retain_perturbed.jsonl, ...) or hub id, e.g. locuslab/TOFU."),
    forget_split: str = typer.Option("forget01", help="Forget split: forget01, forget05 or forget10."),
    reference: Optional[Path] = typer.Option(None, help="per_item.json of an earlier 'ulmr eval tofu' of the retain model; enables Forget Quality."),
    limit_forget: Optional[int] = typer.Option(None, help="Use only the first N forget items."),
    limit_retain: Optional[int] = typer.Option(None, help="Use only the first N retain items."),
    limit_ra: Optional[int] = typer.Option(None, help="Use only the first N Real Authors items."),
    limit_wf: Optional[int] = typer.Option(None, help="Use only the first N World Facts items."),
    max_new_tokens: int = typer.Option(200, help="Max new tokens of the greedy generations scored by ROUGE-L."),
    batch_size: int = BATCH,
    out: Optional[Path] = OUT,
    trust_remote_code: bool = TRC,
) -> None:
    """TOFU: Forget / Retain / Real Authors / World Facts x ROUGE-L, Probability, Truth Ratio; FQ; MU."""
    from ..eval.report import write_report  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..eval.tofu import evaluate_tofu, summary, tofu_table  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    _options(forget_split=forget_split, limit_forget=limit_forget, limit_retain=limit_retain, limit_ra=limit_ra,
             limit_wf=limit_wf, max_new_tokens=max_new_tokens, batch_size=batch_size)
    from ..data.tofu import load_tofu  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    sets = load_tofu(data, forget_split)  # data errors before the model loads
    m, tok = _load(model, trust_remote_code)
    limits = {"forget": limit_forget, "retain": limit_retain, "real_authors": limit_ra, "world_facts": limit_wf}
    res = evaluate_tofu(m, tok, sets, forget_split, limits, max_new_tokens, batch_size, reference)
    res["model"] = model
    write_report(_out(out, "tofu", model), res, summary(res), tofu_table(res, _model_name(model)))


@eval_app.command("rwku")
def rwku_cmd(
    model: str = MODEL,
    data: str = typer.Option(..., "--data", "-d", help="RWKU directory holding '<N>_<Name>' target folders, or the hub id jinzhuoran/RWKU."),
    target: int = typer.Option(..., "--target", "-t", help="Target number N (folder N_<Name>)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N items of every set (MMLU: N items stratified by subject)."),
    utility: str = typer.Option("mmlu", help="Utility: 'mmlu' (Gen, 5-shot), 'easy' (built-in easy set) or 'both'."),
    pool: str = typer.Option("levels", help="'levels': All = mean of the level means (RWKU); 'items': mean over all probes."),
    extra: str = typer.Option("", help="Comma-separated extra utility sets: bbh, truthfulqa, triviaqa, fluency."),
    extra_max_new_tokens: int = typer.Option(128, help="Max new tokens of BBH chain-of-thought and fluency generations."),
    batch_size: int = BATCH,
    out: Optional[Path] = OUT,
    trust_remote_code: bool = TRC,
) -> None:
    """RWKU: Forget FB/QA/AA/All, Neighbour FB/QA/All, MIA FM/RM and utility for one target."""
    from ..data.rwku import CORE_PARTS, load_rwku  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..eval.report import write_report  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..eval.rwku import (  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
        EXTRAS,
        evaluate_rwku,
        rwku_table,
        summary,
    )

    _options(target=target, limit=limit, utility=utility, pool=pool, extra_max_new_tokens=extra_max_new_tokens, batch_size=batch_size)
    extras = tuple(e.strip() for e in extra.split(",") if e.strip())
    bad = [e for e in extras if e not in EXTRAS]
    if bad:
        raise ConfigError(f"--extra: unknown '{bad[0]}' (choose from {', '.join(EXTRAS)})")
    parts = CORE_PARTS + (("mmlu",) if utility != "easy" else ()) + extras
    tgt = load_rwku(data, target, parts)  # data errors before the model loads
    m, tok = _load(model, trust_remote_code)
    res = evaluate_rwku(m, tok, tgt, target, limit, utility, pool, extras, batch_size, extra_max_new_tokens)
    res["model"] = model
    write_report(_out(out, f"rwku{target}", model), res, summary(res), rwku_table(res, _model_name(model)))


@eval_app.command("qa")
def qa_cmd(
    model: str = MODEL,
    forget: list[str] = typer.Option(..., "--forget", "-f", help="Forget set(s): .json/.jsonl/.csv file or hub dataset id; repeatable."),
    retain: Optional[list[str]] = typer.Option(None, "--retain", "-r", help="Retain set(s), same formats; repeatable (their refusal rate = over-refusal)."),
    question_field: str = typer.Option("question", help="Name of the question column."),
    answer_field: str = typer.Option("answer", help="Name of the answer column."),
    max_new_tokens: int = typer.Option(200, help="Max new tokens of the greedy generations."),
    batch_size: int = BATCH,
    out: Optional[Path] = OUT,
    trust_remote_code: bool = TRC,
) -> None:
    """Any QA files: ROUGE-L recall, probability, truth ratio (with paraphrased/perturbed answers), refusal rate."""
    from ..data.records import load_qa  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..eval.qa import evaluate_qa, qa_table  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..eval.report import write_report  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    _options(max_new_tokens=max_new_tokens, batch_size=batch_size)
    sets = {}
    for role, paths in (("forget", forget), ("retain", retain or [])):
        for i, p in enumerate(paths):
            name = role if len(paths) == 1 else f"{role}{i + 1}"
            sets[name] = load_qa(p, question_field, answer_field)
    m, tok = _load(model, trust_remote_code)
    res = evaluate_qa(m, tok, sets, max_new_tokens, batch_size)
    res["model"] = model
    res["files"] = {n: p for n, p in zip(sets, list(forget) + list(retain or []))}
    summ = {k: v for k, v in res.items() if k != "items"}
    write_report(_out(out, "qa", model), res, summ, qa_table(res, _model_name(model)))


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group to the main app."""
    app.add_typer(eval_app, name="eval")
