"""``verify``: measure the base and the unlearned model on the forget set under every attack, then judge.

Every measurement is one :func:`ulmr.eval.qa.evaluate_qa` call per model variant: the prompt conditions
(direct, paraphrase, six adversarial types) and the over-refusal set go through a single call per model;
relearned and quantised variants get one call each. Models are loaded one at a time.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..anchor import anchor_set
from ..data.records import QARecord, load_qa
from ..eval.qa import evaluate_qa, mean
from ..models import cached_model_dir, load
from .attacks import ATTACKS, attack_records
from .config import VerifyConfig, make_config
from .paraphrase import held_out_paraphrases, records_hash
from .quantize import quantize_model
from .relearn import relearn, split_indices
from .report import write_verify_report
from .scoring import knowledge_row, over_refusal, overall, verdicts

log = logging.getLogger(__name__)

DIRECT, PARAPHRASE, REFUSAL, RELEARN = "direct", "paraphrase", "refusal", "relearn"
ADV = "adversarial:"
VERSION = 1


@dataclass
class Inputs:
    """The QA sets every model is measured on."""

    forget: list[QARecord]
    paraphrases: list[QARecord]
    paraphrase_source: str
    refusal: list[QARecord]
    refusal_source: str
    train_idx: list[int]
    test_idx: list[int]

    @property
    def train_half(self) -> list[QARecord]:
        return [self.forget[i] for i in self.train_idx]

    @property
    def test_half(self) -> list[QARecord]:
        return [self.forget[i] for i in self.test_idx]


def _plain(records: Sequence[QARecord]) -> list[QARecord]:
    # extra columns (paraphrased/perturbed answers) would add truth-ratio scoring nobody reads here
    return [QARecord(r.question, r.answer, r.key) for r in records]


def _as_records(x: Sequence[QARecord] | str | Path, question_field: str = "question", answer_field: str = "answer") -> list[QARecord]:
    return load_qa(x, question_field, answer_field) if isinstance(x, (str, Path)) else list(x)


def condition_sets(inputs: Inputs, cfg: VerifyConfig) -> dict[str, list[QARecord]]:
    """The prompt conditions plus the over-refusal set, named as in the report."""
    sets = {DIRECT: inputs.forget, PARAPHRASE: inputs.paraphrases}
    for name in cfg.attacks or tuple(ATTACKS):
        sets[ADV + name] = attack_records(name, inputs.forget, cfg.seed)
    sets[REFUSAL] = inputs.refusal
    return sets


def measure(model, tokenizer, sets: dict[str, list[QARecord]] | None, inputs: Inputs, cfg: VerifyConfig,
            quantise: bool = True) -> dict[str, Any]:
    """One model under every condition: {"qa": evaluate_qa result, "relearn": {...}, "quant": {bits: result}}."""
    ev = lambda m, s: evaluate_qa(m, tokenizer, s, cfg.max_new_tokens, cfg.batch_size)  # noqa: E731
    out: dict[str, Any] = {"qa": ev(model, sets) if sets else None, "quant": {}}
    rel = relearn(model, tokenizer, inputs.train_half, cfg.relearn_steps, cfg.relearn_lr, cfg.relearn_batch_size, cfg.seed)
    out["relearn"] = {"steps": rel.steps, "final_loss": rel.final_loss, **ev(rel.model, {RELEARN: inputs.test_half})}
    del rel
    gc.collect()
    if quantise:
        for bits in cfg.quant_bits:
            out["quant"][bits] = ev(quantize_model(model, bits, cfg.group_size), {DIRECT: inputs.forget})
            gc.collect()
    return out


def _load(spec: str):

    return load(spec)


def prepare_inputs(forget: list[QARecord], retain: Sequence[QARecord] | None, probe: str | Path | None,
                   model_spec: str, base: str, base_model, tokenizer, cfg: VerifyConfig,
                   retain_label: str = "retain set") -> Inputs:
    """Paraphrases, the over-refusal set and the relearning split (uses the base model where it must generate)."""
    paras, para_src = held_out_paraphrases(forget, probe, model_spec, base, base_model, tokenizer, cfg.max_new_tokens, cfg.batch_size)
    if retain is not None:
        refusal, ref_src = list(retain), retain_label
    else:

        refusal, ref_src = anchor_set(base_model, tokenizer, cached_model_dir(base)), "built-in anchor questions"
    train_idx, test_idx = split_indices(len(forget), cfg.seed)
    return Inputs(_plain(forget), _plain(paras), para_src, _plain(refusal), ref_src, train_idx, test_idx)


def _rows(inputs: Inputs, base: dict, unl: dict, ref: dict | None, cfg: VerifyConfig) -> list:
    t = cfg.threshold
    b, u = base["qa"]["sets"], unl["qa"]["sets"]
    rows = [knowledge_row("direct", "forget questions as given", b[DIRECT], u[DIRECT], t),
            knowledge_row("paraphrase", "held-out rewrites", b[PARAPHRASE], u[PARAPHRASE], t)]
    rows += [knowledge_row("adversarial", k[len(ADV):], b[k], u[k], t) for k in b if k.startswith(ADV)]
    floor = ref["relearn"]["sets"][RELEARN]["rougeL_recall"] if ref else 0.0
    prob_floor = ref["relearn"]["sets"][RELEARN]["prob"] if ref else 0.0
    before = [r["rougeL_recall"] for i, r in enumerate(unl["qa"]["items"][DIRECT]) if i in set(inputs.test_idx)]
    rows.append(knowledge_row(
        "relearning", f"{cfg.relearn_steps} steps at lr {cfg.relearn_lr:g} on {len(inputs.train_idx)} items",
        base["relearn"]["sets"][RELEARN], unl["relearn"]["sets"][RELEARN], t, floor,
        {"unlearned_before": mean(before), "steps_run": {"base": base["relearn"]["steps"], "unlearned": unl["relearn"]["steps"],
                                                          **({"reference": ref["relearn"]["steps"]} if ref else {})},
         "reference_after": floor if ref else None, "comparison": "reference model" if ref else "base model"}, prob_floor))
    for bits in cfg.quant_bits:
        rows.append(knowledge_row("quantisation", f"{bits}-bit RTN, group {cfg.group_size}",
                                  base["quant"][bits]["sets"][DIRECT], unl["quant"][bits]["sets"][DIRECT], t))
    return rows


def _items(**measured: dict | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for who, m in measured.items():
        if not m:
            continue
        out[who] = {**(m["qa"]["items"] if m.get("qa") else {}), RELEARN: m["relearn"]["items"][RELEARN]}
        for bits, q in m["quant"].items():
            out[who][f"quant{bits}"] = q["items"][DIRECT]
    return out


def verify(model: str | Path, base: str, forget_records: Sequence[QARecord] | str | Path, *,
           retain: Sequence[QARecord] | str | Path | None = None, probe: str | Path | None = None,
           reference_model: str | None = None, out: str | Path | None = None, config: VerifyConfig | None = None,
           question_field: str = "question", answer_field: str = "answer", show: bool = True, **options: Any) -> dict[str, Any]:
    """Measure whether forgotten knowledge comes back; write verify.json/.md/.png (+ per-item JSON) to ``out``.

    ``model``: the unlearned model (directory or spec); ``base``: the model before unlearning;
    ``forget_records``: records or a QA file; ``retain``: records or a QA file for over-refusal (default:
    the built-in anchor questions); ``probe``: held-out paraphrases (default: the run's probe.jsonl in ``model``.records, else
    generated by the base); ``reference_model``: a model that never knew the facts, the floor of the
    relearning check; ``question_field``/``answer_field``: column names in QA files; ``options``: :class:`VerifyConfig` fields. Returns the summary written to verify.json.
    """
    cfg = config or make_config(**options)
    model, t0 = str(model), time.time()
    forget = _as_records(forget_records, question_field, answer_field)
    retain_label = f"retain set {retain}" if isinstance(retain, (str, Path)) else "retain set (in memory)"
    if isinstance(retain, (str, Path)):
        retain = _as_records(retain, question_field, answer_field)
    log.info("verify: loading the base model %s", base)
    base_model, base_tok = _load(base)
    inputs = prepare_inputs(forget, retain, probe, model, base, base_model, base_tok, cfg, retain_label)
    sets = condition_sets(inputs, cfg)
    log.info("verify: measuring the base model")
    base_m = measure(base_model, base_tok, sets, inputs, cfg)
    del base_model
    gc.collect()
    log.info("verify: measuring the unlearned model %s", model)
    u_model, u_tok = _load(model)
    unl_m = measure(u_model, u_tok, sets, inputs, cfg)
    del u_model
    gc.collect()
    ref_m = None
    if reference_model:
        log.info("verify: relearning the reference model %s", reference_model)
        r_model, r_tok = _load(reference_model)
        ref_m = measure(r_model, r_tok, None, inputs, cfg, quantise=False)
        del r_model
        gc.collect()
    rows = _rows(inputs, base_m, unl_m, ref_m, cfg)
    refusal = over_refusal(inputs.refusal_source, base_m["qa"]["sets"][REFUSAL], unl_m["qa"]["sets"][REFUSAL], cfg.refusal_threshold)
    checks = verdicts(rows, refusal)
    summary: dict[str, Any] = {
        "ulmr_verify_version": VERSION,
        "model": model, "base": base, "reference_model": reference_model,
        "forget": {"source": str(forget_records) if isinstance(forget_records, (str, Path)) else "(in memory)",
                   "items": len(forget), "content_hash": records_hash(forget)},
        "settings": cfg.model_dump(mode="json"),
        "sources": {"paraphrase": inputs.paraphrase_source, "over_refusal": inputs.refusal_source},
        "relearning": {"train_items": [forget[i].question for i in inputs.train_idx],
                       "measured_items": [forget[i].question for i in inputs.test_idx],
                       "schedule": "constant lr, AdamW, plain NLL on the train half (method 'retrain')"},
        "quantisation": {"scheme": "round-to-nearest, group-wise symmetric, de-quantised in place",
                         "group_size": cfg.group_size, "bits": list(cfg.quant_bits),
                         "applied_to": "every nn.Linear weight except lm_head"},
        "rows": [r.as_dict() for r in rows],
        "over_refusal": refusal.as_dict(),
        "checks": checks,
        "passed": overall(checks),
        "seconds": round(time.time() - t0, 1),
    }
    if out is not None:

        write_verify_report(out, summary, _items(base=base_m, unlearned=unl_m, reference=ref_m), show=show)
    return summary
