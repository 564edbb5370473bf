"""Multiple-choice accuracy by next-token scoring of the option letters (MMLU style), in two layouts.

``layout="project"`` (the built-in easy set's letter scoring): one user turn, rendered with
:class:`~ulmr.data.chat.ChatFormat` and the project's fixed system text::

    The following are multiple choice questions (with answers) about {subject}.\\n\\n
    Question: {q}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer: {X}\\n\\n      (k shots)
    Question: {q}\\nA. ...\\nD. {c3}\\nAnswer:                                   (the test item)

The letters are scored *without* a leading space ("A".."D"): the letter is the first token of the assistant
turn, and that is how :meth:`ChatFormat.encode` tokenises an answer "A" (for SmolLM2: ids 49..52).

``layout="rwku"`` (RWKU's Gen column, as RWKU's ``eval_mmlu.py`` renders it): the same header and shots, then
the line "Please following the previous examples and answer the given question.\\n" and the test question
*without* "Answer:"; the chat template is applied with no system message (the template's own default system
text appears, e.g. SmolLM2's), and "Answer:" follows the generation prompt. The letters are scored *with* the
leading space (" A".." D": the last token of encoding " A", for SmolLM2 ids 330, 389, 340, 422).

In both, the prediction is the argmax of the next-token logits at the prompt's end, restricted to the four
letter tokens; accuracy = share of items whose argmax letter is the gold.

A second scoring, :func:`mcq_cloze_predict` ("cloze", as in lm-evaluation-harness' cloze formulation and ARC
"acc_norm"-style scoring), asks no letters: each option is scored as the assistant's answer to the bare
question with the batched log-likelihood engine, and the prediction is the option with the highest summed
log-likelihood of its own tokens (lm-eval's "acc": no length normalisation, and the end-of-turn token is *not*
scored: a small model rarely stops after one word, and that term would swamp the option's own tokens).
Very small models (SmolLM2-135M) sit at chance on the letter format even on trivial questions, but not on
cloze; the easy utility set therefore reports both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..data.chat import FIXED_SYSTEM, IGNORE, ChatFormat, Encoded, pad
from ..inference import budget_batches, score
from ..progress import progress_bar

LETTERS = ("A", "B", "C", "D")
HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"
RWKU_INSTRUCTION = "Please following the previous examples and answer the given question.\n"  # sic, as in RWKU
RWKU_SUFFIX = "Answer:"  # after the generation prompt
LAYOUTS = ("project", "rwku")


@dataclass
class MCQItem:
    """One multiple-choice question; ``answer`` is a 0-based index into ``choices``."""

    question: str
    choices: list[str]
    answer: int
    subject: str = ""
    shots: list["MCQItem"] | None = None


def format_subject(subject: str) -> str:
    """'high_school_biology' -> 'high school biology' (MMLU task names)."""
    return subject.replace("_", " ").strip()


def question_block(item: MCQItem) -> str:
    """'Question: q\\nA. ...\\nD. ...' (no 'Answer:')."""
    lines = [f"Question: {item.question}"] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices)]
    return "\n".join(lines)


def format_question(item: MCQItem, with_answer: bool) -> str:
    """'Question: q\\nA. ...\\nD. ...\\nAnswer:' (+ ' X\\n\\n' for a shot)."""
    text = question_block(item) + "\nAnswer:"
    return text + f" {LETTERS[item.answer]}\n\n" if with_answer else text


def format_prompt(item: MCQItem, k_shots: int | None = None) -> str:
    """The user-turn text: header, ``k_shots`` solved examples (all of ``item.shots`` when None), the question."""
    shots = list(item.shots or [])[: k_shots if k_shots is not None else None]
    head = HEADER.format(subject=format_subject(item.subject)) if item.subject else ""
    return head + "".join(format_question(s, True) for s in shots) + format_question(item, False)


def format_rwku_prompt(item: MCQItem, k_shots: int | None = None) -> str:
    """RWKU's user turn: header, ``k_shots`` solved examples, the instruction line, the question without
    'Answer:' (that cue follows the generation prompt, :data:`RWKU_SUFFIX`)."""
    shots = list(item.shots or [])[: k_shots if k_shots is not None else None]
    head = HEADER.format(subject=format_subject(item.subject)) if item.subject else ""
    return head + "".join(format_question(s, True) for s in shots) + RWKU_INSTRUCTION + question_block(item)


def spaced_letter_ids(tokenizer) -> list[int]:
    """Token ids of ' A'..' D' as RWKU scores them: the last token of encoding ' A' without special tokens."""
    return [tokenizer.encode(" " + letter, add_special_tokens=False)[-1] for letter in LETTERS]


def letter_token_ids(tokenizer) -> list[int]:
    """Token ids of 'A'..'D' as the first token of an assistant turn (no leading space)."""
    ids = []
    for letter in LETTERS:
        toks = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"letter {letter!r} is not a single token for this tokenizer")
        ids.append(toks[0])
    return ids


def last_token_logits(model, prompts: Sequence[Sequence[int]], token_ids: Sequence[int], pad_id: int,
                      batch_size: int = 8, description: str | None = None) -> list[list[float]]:
    """Logits of ``token_ids`` at the last position of each prompt: one forward per batch
    (:func:`~ulmr.inference.budget_batches`), left-padded, ``logits_to_keep=1`` so only the last position is
    projected onto the vocabulary."""
    device = next(model.parameters()).device
    out: list[list[float] | None] = [None] * len(prompts)
    sel = torch.tensor(list(token_ids), device=device)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(description, total=len(prompts)) if description else None
        for idx in budget_batches([len(p) for p in prompts], batch_size):
            seqs = [prompts[i] for i in idx]
            ids = pad(seqs, pad_id, side="left").to(device)
            mask = pad([[1] * len(s) for s in seqs], 0, side="left").to(device)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
            picked = logits.float().index_select(-1, sel).tolist()
            for j, i in enumerate(idx):
                out[i] = picked[j]
            if task is not None:
                bar.advance(task, len(idx))
    model.train(was_training)
    return out  # type: ignore[return-value]


def mcq_layout(tokenizer, layout: str = "project",
               k_shots: int | None = None) -> tuple[ChatFormat, Callable[[MCQItem], str], str, list[int]]:
    """(ChatFormat, item -> user text, suffix after the generation prompt, letter token ids) of a layout."""
    if layout == "rwku":
        return (ChatFormat(tokenizer, system=None), lambda it: format_rwku_prompt(it, k_shots), RWKU_SUFFIX,
                spaced_letter_ids(tokenizer))
    if layout == "project":
        return ChatFormat(tokenizer, FIXED_SYSTEM), lambda it: format_prompt(it, k_shots), "", letter_token_ids(tokenizer)
    raise ValueError(f"multiple-choice layout must be one of {LAYOUTS}, got {layout!r}")


def mcq_predict(model, tokenizer, items: Sequence[MCQItem], k_shots: int | None = None, batch_size: int = 8,
                description: str | None = None, layout: str = "project") -> list[dict]:
    """Per-item records: prompt text (as the model reads it), letter logits, predicted and gold letter, correct
    flag. ``layout``: "project" or "rwku" (RWKU's eval_mmlu rendering and scoring, see the module docstring)."""
    cf, user_text, suffix, letter_ids = mcq_layout(tokenizer, layout, k_shots)
    texts = [user_text(it) for it in items]
    prompts = [cf.prompt_ids(t, suffix=suffix) for t in texts]
    n = [len(it.choices) for it in items]
    if any(k < 2 or k > len(LETTERS) for k in n):
        raise ValueError("every multiple-choice item needs 2 to 4 choices")
    logits = last_token_logits(model, prompts, letter_ids, tokenizer.pad_token_id, batch_size, description)
    recs = []
    for it, text, lg, k in zip(items, texts, logits, n):
        pred = max(range(k), key=lambda j: lg[j])
        recs.append({
            "prompt": cf.render_text([{"role": "user", "content": text}], suffix=suffix), "layout": layout,
            "question": it.question, "choices": it.choices, "subject": it.subject,
            "gold": LETTERS[it.answer], "pred": LETTERS[pred], "letter_logits": lg[:k],
            "correct": pred == it.answer,
        })
    return recs


def option_only(enc: Encoded, tokenizer, option: str) -> Encoded:
    """Drop the end-of-turn label of an encoded answer: only the option's own tokens stay scored."""
    n = len(tokenizer(option, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    labels = list(enc.labels)
    for k in range(enc.prompt_len + n, len(labels)):
        labels[k] = IGNORE
    return Encoded(enc.input_ids, labels, enc.prompt_len)


def mcq_cloze_predict(model, tokenizer, items: Sequence[MCQItem], batch_size: int = 16,
                      description: str | None = None) -> list[dict]:
    """Per-item records of cloze scoring: every option's summed NLL (its tokens only), argmin as the prediction."""
    cf = ChatFormat(tokenizer)
    encs = [option_only(cf.encode(it.question, c), tokenizer, c) for it in items for c in it.choices]
    scored = iter(score(model, encs, tokenizer.pad_token_id, batch_size, description=description))
    recs = []
    for it in items:
        nlls = [next(scored).nll_sum for _ in it.choices]
        pred = min(range(len(nlls)), key=lambda j: nlls[j])
        recs.append({
            "prompt": cf.render_text([{"role": "user", "content": it.question}]),
            "question": it.question, "choices": it.choices, "subject": it.subject,
            "gold": LETTERS[it.answer], "pred": LETTERS[pred], "option_nll_sums": nlls,
            "correct": pred == it.answer,
        })
    return recs


def accuracy(correct: Sequence[bool]) -> float:
    """Share of correct predictions; 0 for an empty list."""
    return sum(map(bool, correct)) / len(correct) if correct else 0.0
