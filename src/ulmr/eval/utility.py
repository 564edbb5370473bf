"""The built-in easy general-knowledge multiple-choice set (0-shot) and the multiple-choice row parser.

The demo, the α sweep and RWKU's "Easy" column score utility on this set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.records import read_jsonl
from ..errors import ConfigError, DataError
from ..metrics.mcq import LETTERS, MCQItem, accuracy, mcq_cloze_predict, mcq_predict
from ..paths import resources_dir

UTILITY_EASY = "utility_easy.jsonl"
EASY_SCORING = "cloze"  # 0-shot; SmolLM2-135M is at chance on letters even here (docs/results/eval_rwku_smollm2.md)
# Appended to each question for cloze scoring: asks for a short answer, so a bare option is a natural reply.
EASY_CLOZE_INSTRUCTION = " Answer in a few words."


def mcq_items(rows: list[dict], where: str) -> list[MCQItem]:
    """Multiple-choice rows (question, choices, integer answer index, optional task/subject and few-shot
    examples) as :class:`MCQItem`; a bad row raises a DataError naming ``where`` and its line."""
    items = []
    for n, r in enumerate(rows, 1):
        ch, ans = r.get("choices"), r.get("answer")
        if not isinstance(ch, list) or not 2 <= len(ch) <= len(LETTERS) or not isinstance(ans, int) or not 0 <= ans < len(ch):
            raise DataError(f"{where}:{n}: needs 'choices' (2-4 strings) and an integer 'answer' index into them")
        shots = [MCQItem(e["question"], e["choices"], e["answer"], e.get("subject", "")) for e in r.get("examples", [])]
        items.append(MCQItem(r["question"], ch, ans, r.get("task", r.get("subject", "")), shots))
    return items


def load_utility_easy(path: str | Path | None = None) -> list[MCQItem]:
    """The built-in easy general-knowledge multiple-choice set (or a file with the same fields)."""
    path = Path(path) if path is not None else resources_dir() / UTILITY_EASY
    items = mcq_items(read_jsonl(path), str(path))
    # the easy set is 0-shot and its 'subject' is a plain topic: no MMLU header
    return [MCQItem(it.question, it.choices, it.answer) for it in items]


def evaluate_utility_easy(model, tokenizer, limit: int | None = None, batch_size: int = 16,
                          scoring: str = EASY_SCORING) -> dict[str, Any]:
    """Accuracy (fraction) on the built-in easy set, 0-shot; {"accuracy", "n", "scoring", "items"}.

    ``scoring="cloze"`` (default): each option scored as the answer to "{question} Answer in a few words."
    (:func:`~ulmr.metrics.mcq.mcq_cloze_predict`);
    ``"letter"``: MMLU-style next-token letter scoring (:func:`~ulmr.metrics.mcq.mcq_predict`).
    """
    items = load_utility_easy()[: limit or None]
    if scoring == "cloze":
        items = [MCQItem(it.question + EASY_CLOZE_INSTRUCTION, it.choices, it.answer, it.subject) for it in items]
        recs = mcq_cloze_predict(model, tokenizer, items, batch_size=batch_size, description="utility (easy)")
    elif scoring == "letter":
        recs = mcq_predict(model, tokenizer, items, k_shots=0, batch_size=batch_size, description="utility (easy)")
    else:
        raise ConfigError(f"easy-utility scoring must be cloze or letter, got '{scoring}'")
    return {"accuracy": accuracy([r["correct"] for r in recs]), "n": len(recs), "scoring": scoring, "items": recs}
