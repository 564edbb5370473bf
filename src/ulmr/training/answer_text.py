"""The text ULMR's answer term (``--answer-weight``) pushes down: the key span of the answer each D_fr
row replaced, in the words the model itself answers with (``--answer-source model``, the default) or
as the data gives it (``--answer-source data``).

Why the model's words: a forget set's answer is often the bare fact ("J.K. Rowling"), while the model,
asked the question, says "The Harry Potter books are written by J.K. Rowling." Measured on the example
set at α = 0.5, three seeds (docs/results/example_set.md): held-out paraphrases fell as far with either
text, but easy multiple-choice utility stayed within a point of plain SFT only with the model's words
(with the data's it lost 2.8 points at every seed; our reading: a bare fact is lowered as the first
token of a reply, where every short answer competes).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from ..data.records import QARecord
from ..generate.filters import key_span, leaked_terms
from ..inference import cached_answers

# Long enough for a one-sentence answer to name the fact; only the key-span tokens are labelled.
ANSWER_TOKENS = 48


def original_key(record: QARecord) -> list[str]:
    """The key span of the answer a D_fr row replaced: its ``key`` column, else derived from the row's
    question and ``original_answer``."""
    return record.key or key_span(record.question, record.extra.get("original_answer") or "")


def model_answers(model, tokenizer, questions: Sequence[str], cache: Path | None = None, adapter_off: bool = False,
                  batch_size: int = 32) -> list[str]:
    """The model's greedy answers to ``questions`` (ChatFormat's fixed system text). With ``cache`` (a
    JSONL file of question/answer rows) earlier answers of the same model are reused and only missing
    ones generated."""
    tag = str(getattr(model.config, "_name_or_path", "")) if model is not None else ""
    with model.disable_adapter() if adapter_off else nullcontext():  # LoRA: the base model's answers
        answers, _ = cached_answers(model, tokenizer, questions, cache, max_new_tokens=ANSWER_TOKENS, batch_size=batch_size,
                                    description="model's own answers", tag=tag)
    return answers


def choose_answer_texts(forget: Sequence[QARecord], own: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Per D_fr row, the text whose key-span tokens the answer term lowers, and how many rows took each kind.

    * ``model``: the model's own answer to the row's question, when it names a key-span term of the
      original answer;
    * ``item``: else the model's own answer to its item's original question (the row of the same
      ``source_index`` with ``variant`` 'original'), when that names one and the row has a key span
      (without one the labels would fall on the whole sentence, not on the fact);
    * ``data``: else the original answer as the data gives it.
    """
    keys = [original_key(r) for r in forget]
    names = [bool(leaked_terms(a, k)) for a, k in zip(own, keys)]
    item_answer: dict[object, str] = {}
    for r, a, named in zip(forget, own, names):
        if named and r.extra.get("variant") == "original" and "source_index" in r.extra:
            item_answer.setdefault(r.extra["source_index"], a)
    texts: list[str] = []
    counts = {"model": 0, "item": 0, "data": 0}
    for r, a, k, named in zip(forget, own, keys, names):
        if named:
            texts.append(a)
            counts["model"] += 1
        elif k and r.extra.get("source_index") in item_answer:
            texts.append(item_answer[r.extra["source_index"]])
            counts["item"] += 1
        else:
            texts.append(r.extra["original_answer"])
            counts["data"] += 1
    return texts, counts
