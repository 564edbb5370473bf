"""QA evaluation on any question/answer sets, and the per-item core that TOFU reuses.

:func:`run_items` generates an answer for every item (one batched ``generate`` call) and scores the gold,
paraphrased and perturbed answers (one batched ``score`` call over all of them). :func:`evaluate_qa` turns
that into per-set means::

    {"sets":  {name: {"rougeL_recall": float, "prob": float, "truth_ratio": float | None,
                      "refusal_rate": float, "n": int}},
     "items": {name: [per-item dict, ...]}}

Per-item dicts hold the exact prompt string, question, gold answer, generation, ROUGE-L recall, the mean
answer NLL and p̄ of the gold answer, and (when present) the paraphrased/perturbed answers with their NLLs
and the raw truth ratio R. Truth ratio per set: a set whose name starts with "forget" uses the forget form
mean(min(R, 1/R)), any other set the retain form mean(max(0, 1 - R)); without a paraphrased answer the gold
answer plays its part (as in TOFU's Real Authors / World Facts). Refusal rate: share of generations that
:func:`ulmr.refusal.is_refusal` flags (on retain sets: over-refusal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from ..data.chat import ChatFormat
from ..data.records import QARecord
from ..inference import generate, generation_batch, score
from ..metrics.probability import prob_from_nll
from ..metrics.rouge import rougeL_recall
from ..metrics.truth_ratio import forget_truth_ratio, retain_truth_ratio, truth_ratio
from ..refusal import is_refusal, refusal_rate
from .report import Table, fmt

if TYPE_CHECKING:
    from .report import Table


@dataclass
class QAItem:
    """A question with its gold answer and optional paraphrased / perturbed answers."""

    question: str
    answer: str
    paraphrased: str | None = None
    perturbed: list[str] = field(default_factory=list)


def from_record(r: QARecord) -> QAItem:
    """QARecord -> QAItem, reading ``paraphrased_answer`` / ``perturbed_answer`` from its extra columns."""
    para = r.extra.get("paraphrased_answer")
    pert = r.extra.get("perturbed_answer") or []
    pert = [pert] if isinstance(pert, str) else [p for p in pert if isinstance(p, str)]
    return QAItem(r.question, r.answer, para if isinstance(para, str) else None, pert)


def run_items(model, tokenizer, items: Sequence[QAItem], max_new_tokens: int = 200, batch_size: int = 16,
              generate_answers: bool = True, label: str = "") -> list[dict[str, Any]]:
    """Per-item records for ``items``: generation + ROUGE-L recall, and NLLs of every answer variant."""
    cf = ChatFormat(tokenizer)
    records: list[dict[str, Any]] = [
        {"prompt": cf.render_text([{"role": "user", "content": it.question}]), "question": it.question, "answer": it.answer}
        for it in items
    ]
    if generate_answers:
        gens = generate(model, tokenizer, [cf.prompt_ids(it.question) for it in items], max_new_tokens, generation_batch(batch_size),
                        description=f"generating {label}".strip())
        for rec, gen in zip(records, gens):
            rec["generated"] = gen
            rec["rougeL_recall"] = rougeL_recall(rec["answer"], gen)
            rec["refusal"] = is_refusal(gen)
    # One flat scoring pass over all answer variants: (item index, kind, position).
    encs, slots = [], []
    for i, it in enumerate(items):
        encs.append(cf.encode(it.question, it.answer)); slots.append((i, "answer"))
        if it.paraphrased is not None:
            encs.append(cf.encode(it.question, it.paraphrased)); slots.append((i, "paraphrased"))
        for p in it.perturbed:
            encs.append(cf.encode(it.question, p)); slots.append((i, "perturbed"))
    scored = score(model, encs, tokenizer.pad_token_id, batch_size, description=f"scoring {label}".strip())
    for (i, kind), s in zip(slots, scored):
        rec = records[i]
        if kind == "answer":
            rec["answer_nll"] = s.mean_nll
            rec["answer_prob"] = prob_from_nll(s.mean_nll)
        elif kind == "paraphrased":
            rec["paraphrased_answer"] = items[i].paraphrased
            rec["paraphrased_nll"] = s.mean_nll
        else:
            rec.setdefault("perturbed_answers", list(items[i].perturbed))
            rec.setdefault("perturbed_nlls", []).append(s.mean_nll)
    for rec in records:
        if rec.get("perturbed_nlls"):
            rec["truth_ratio_raw"] = truth_ratio(rec.get("paraphrased_nll", rec["answer_nll"]), rec["perturbed_nlls"])
    return records


def mean(xs: Sequence[float]) -> float:
    """Arithmetic mean; NaN for an empty sequence."""
    return sum(xs) / len(xs) if xs else float("nan")


def summarize_set(name: str, recs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-set means of a list of :func:`run_items` records."""
    ratios = [r["truth_ratio_raw"] for r in recs if "truth_ratio_raw" in r]
    tr = None
    if ratios:
        tr = forget_truth_ratio(ratios) if name.startswith("forget") else retain_truth_ratio(ratios)
    return {
        "rougeL_recall": mean([r["rougeL_recall"] for r in recs if "rougeL_recall" in r]),
        "prob": mean([r["answer_prob"] for r in recs]),
        "truth_ratio": tr,
        "refusal_rate": refusal_rate([r["generated"] for r in recs if "generated" in r]),
        "n": len(recs),
    }


def evaluate_qa(model, tokenizer, sets: dict[str, list[QARecord]], max_new_tokens: int = 200,
                batch_size: int = 16) -> dict[str, Any]:
    """Evaluate named QA sets in-process; see the module docstring for the return shape."""
    names = list(sets)
    items = [from_record(r) for n in names for r in sets[n]]
    recs = run_items(model, tokenizer, items, max_new_tokens, batch_size, label="QA sets")
    out_items: dict[str, list[dict[str, Any]]] = {}
    pos = 0
    for n in names:
        out_items[n] = recs[pos : pos + len(sets[n])]
        pos += len(sets[n])
    return {"sets": {n: summarize_set(n, out_items[n]) for n in names}, "items": out_items}


def qa_table(result: dict[str, Any], model_name: str) -> Table:
    """One row per set: ROUGE-L recall, probability, truth ratio, refusal rate (all in %), n."""

    rows = [
        [model_name, n, fmt(s["rougeL_recall"], 100), fmt(s["prob"], 100), fmt(s["truth_ratio"], 100), fmt(s["refusal_rate"], 100), str(s["n"])]
        for n, s in result["sets"].items()
    ]
    return Table(
        f"QA evaluation: {model_name}",
        ["Model", "Set", "ROUGE-L R (%)", "Prob (%)", "Truth ratio (%)", "Refusal rate (%)", "n"],
        rows,
        ["Truth ratio: forget form mean(min(R,1/R)) on sets named forget*, else mean(max(0,1-R)); '-' without perturbed answers.",
         "Refusal rate on retain sets = over-refusal."],
    )
