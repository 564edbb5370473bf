"""Chat formatting: prompts, answer-only labels and padding, identical for training and evaluation.

Every message is rendered through the model's chat template with a fixed system text and a fixed date,
so numbers do not drift with the day. User-provided text is tokenised *apart from* the template:
the template is rendered around unique placeholders, then template pieces are tokenised with their
special tokens and data pieces with ``split_special_tokens=True``. So a question that contains
``<|im_end|>`` or ``{{ }}`` stays plain text and cannot alter the prompt's structure.

Labels mark answer tokens plus the template's end-of-turn token (which for SmolLM2 equals the pad
token): masking is by position, never by pad id.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # annotations only: the label helpers below serve methods/, which runs without transformers
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

FIXED_SYSTEM = "You are a helpful AI assistant."
FIXED_DATE = "26 Jul 2024"  # for templates that inject today's date (Llama 3.x)
IGNORE = -100

Message = dict[str, str]
_ANSWER = "\x00"  # stands for the answer while the conversation is rendered
_FRAMED = re.compile(r"(?:^|\n)Question:")  # a user turn in the plain format's own framing


@dataclass
class Encoded:
    """One tokenised example: ``labels`` is -100 on the prompt and on padding."""

    input_ids: list[int]
    labels: list[int]
    prompt_len: int

    @property
    def answer_len(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def answer_window(labels: torch.Tensor) -> int:
    """How many final positions' logits the answer tokens of a ``[B, T]`` label batch need: from the one
    before the batch's first labelled token to the end, at most T (position 0 has no predecessor, so
    nothing predicts it). Asking the model for only these skips the vocabulary projection and the
    log-softmax on the prompt."""
    labelled = (labels != IGNORE).any(0).nonzero()
    first = int(labelled[0]) if len(labelled) else labels.shape[1] - 1
    return min(labels.shape[1], labels.shape[1] - first + 1)


class ChatFormat:
    """Renders questions/answers for one tokenizer. ``system=None`` keeps no system turn at all only if
    the template adds none; by default the fixed :data:`FIXED_SYSTEM` replaces any template default."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, system: str | None = FIXED_SYSTEM, max_length: int = 1024):
        self.tok = tokenizer
        self.system = system
        self.max_length = max_length
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self._special = set(tokenizer.all_special_ids)
        self._warned_truncation = False
        if not self.has_template:
            log.warning("tokenizer has no chat template; using the 'Question: ...\\nAnswer: ...' format")

    # ------------------------------------------------------------------ rendering
    def _messages(self, turns: Sequence[Message]) -> list[Message]:
        msgs = list(turns)
        if self.system is not None and (not msgs or msgs[0]["role"] != "system"):
            msgs = [{"role": "system", "content": self.system}] + msgs
        return msgs

    def _pieces(self, messages: Sequence[Message], add_generation_prompt: bool, suffix: str = "") -> list[tuple[str, int | None]]:
        """Split the rendered conversation into (text, message index or None for template text); ``suffix``
        is the text that will follow it (the plain format adds no 'Answer:' cue when it holds one)."""
        if not self.has_template:
            return self._plain_pieces(messages, suffix)
        nonce = secrets.token_hex(6)
        marks = [f"\u27e6{nonce}:{i}\u27e7" for i in range(len(messages))]
        masked = [{"role": m["role"], "content": marks[i]} for i, m in enumerate(messages)]
        text = self.tok.apply_chat_template(
            masked, tokenize=False, add_generation_prompt=add_generation_prompt, date_string=FIXED_DATE
        )
        pieces: list[tuple[str, int | None]] = []
        pattern = re.compile("\u27e6" + nonce + r":(\d+)\u27e7")
        pos = 0
        for m in pattern.finditer(text):
            if m.start() > pos:
                pieces.append((text[pos : m.start()], None))
            pieces.append((messages[int(m.group(1))]["content"], int(m.group(1))))
            pos = m.end()
        if pos < len(text):
            pieces.append((text[pos:], None))
        return pieces

    def _plain_pieces(self, messages: Sequence[Message], suffix: str = "") -> list[tuple[str, int | None]]:
        """Without a template: 'Question: {user}\nAnswer:' and ' {assistant}<eos>\n'.

        A user turn that frames itself (a line starting 'Question:', as RWKU's and MMLU's prompts do) is
        kept as written, and the 'Answer:' cue is added only where the turn (with ``suffix`` for the last
        one) does not already end with one; a ``suffix`` cue after a turn that ends mid-line starts a new
        line (RWKU's MMLU question ends with its last option). The space after 'Question:' and 'Answer:' is
        part of the text that follows (a reply begins with it, as the model generates it), never a token of
        its own."""
        pieces: list[tuple[str, int | None]] = []
        if self.tok.bos_token:
            pieces.append((self.tok.bos_token, None))
        for i, m in enumerate(messages):
            if m["role"] == "system":
                pieces += [(m["content"], i), ("\n\n", None)]
            elif m["role"] == "user":
                text = m["content"]
                pieces += [(text, i)] if _FRAMED.search(text) else [("Question:", None), (" " + text, i)]
                last = i == len(messages) - 1
                ending = text + (suffix if last else "")
                if not ending.rstrip().lower().endswith("answer:"):
                    pieces.append(("Answer:" if ending.endswith("\n") else "\nAnswer:", None))
                elif last and suffix and not text.endswith(("\n", " ")):
                    pieces.append(("\n", None))  # the suffix's cue starts a line of its own
            else:
                pieces += [(" " + m["content"], i), ((self.tok.eos_token or "") + "\n", None)]
        return pieces

    def _ids(self, text: str, is_data: bool) -> list[int]:
        if not text:
            return []
        return self.tok(text, add_special_tokens=False, split_special_tokens=is_data)["input_ids"]

    def render_text(self, turns: Sequence[Message], add_generation_prompt: bool = True, suffix: str = "") -> str:
        """The exact prompt string (for per-item records), template applied."""
        return "".join(t for t, _ in self._pieces(self._messages(turns), add_generation_prompt, suffix)) + suffix

    def prompt_ids(self, turns: Sequence[Message] | str, suffix: str = "") -> list[int]:
        """Token ids of a prompt ending with the assistant's generation prompt (+ ``suffix``, e.g. 'Answer:')."""
        if isinstance(turns, str):
            turns = [{"role": "user", "content": turns}]
        ids: list[int] = []
        for text, idx in self._pieces(self._messages(turns), add_generation_prompt=True, suffix=suffix):
            ids += self._ids(text, is_data=idx is not None)
        if suffix:
            ids += self._ids(suffix, is_data=True)
        return ids

    def prompt_ids_and_context(self, turns: Sequence[Message]) -> tuple[list[int], int]:
        """:meth:`prompt_ids` plus the length of its *context*: the tokens before the last turn's text.

        Prompts that share their earlier turns (few-shot examples, system text) share this prefix token
        for token, because every piece is tokenised on its own; generation computes it once per batch.
        """
        msgs = self._messages(turns)
        last = len(msgs) - 1
        ids: list[int] = []
        context = 0
        for text, idx in self._pieces(msgs, add_generation_prompt=True):
            if idx == last:
                context = len(ids)
            ids += self._ids(text, is_data=idx is not None)
        return ids, context

    # ------------------------------------------------------------------ training / scoring
    def encode(self, question: str | Sequence[Message], answer: str, prefix: str = "") -> Encoded:
        """Prompt + answer with labels on the answer tokens and the end-of-turn token only.

        ``prefix`` is text the assistant turn starts with that is part of the prompt (RWKU's 'Answer:').
        Too-long examples are truncated from the answer's end (with a warning), never dropped.
        """
        turns = [{"role": "user", "content": question}] if isinstance(question, str) else list(question)
        msgs = self._messages(turns) + [{"role": "assistant", "content": _ANSWER}]
        pieces = self._pieces(msgs, add_generation_prompt=False)
        a_idx = len(msgs) - 1
        prompt: list[int] = []
        answer_ids: list[int] = []
        tail: list[int] = []
        seen_answer = False
        for text, idx in pieces:
            if idx == a_idx:
                seen_answer = True
                lead = text.split(_ANSWER)[0]  # the plain format's space after 'Answer:'
                answer_ids = self._ids(lead + prefix + answer, is_data=True)
                if prefix:
                    n_prefix = len(self._ids(lead + prefix, is_data=True))
                    prompt += answer_ids[:n_prefix]
                    answer_ids = answer_ids[n_prefix:]
            elif not seen_answer:
                prompt += self._ids(text, is_data=idx is not None)
            else:
                tail += self._ids(text, is_data=idx is not None)
        end = self._end_of_turn(tail)
        budget = self.max_length - len(prompt) - len(end)
        if len(answer_ids) > budget:
            if not self._warned_truncation:
                log.warning("an answer is longer than the context (%d tokens); truncated to %d", len(answer_ids), max(budget, 0))
                self._warned_truncation = True
            answer_ids = answer_ids[: max(budget, 0)]
        target = answer_ids + end
        return Encoded(prompt + target, [IGNORE] * len(prompt) + target, len(prompt))

    def _end_of_turn(self, tail: list[int]) -> list[int]:
        """Template tokens after the answer up to and including the first special token (EOS / <|eot|>)."""
        for i, t in enumerate(tail):
            if t in self._special:
                return tail[: i + 1]
        return [self.tok.eos_token_id] if self.tok.eos_token_id is not None else []

    def encode_text(self, text: str) -> Encoded:
        """Raw text, no template, every token labelled (RWKU's MIA statistic)."""
        ids = self.tok(text, add_special_tokens=True)["input_ids"][: self.max_length]
        return Encoded(ids, list(ids), 0)


def pad(seqs: Sequence[Sequence[int]], value: int, side: str = "right") -> torch.Tensor:
    """Pad id lists into one LongTensor, on the right (training, scoring) or left (generation)."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        if side == "right":
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        else:
            out[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(examples: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on padding by position (never by comparing with pad id)."""
    ids = pad([e.input_ids for e in examples], pad_id)
    labels = pad([e.labels for e in examples], IGNORE)
    mask = pad([[1] * len(e.input_ids) for e in examples], 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
