"""Batched engines every metric uses: answer log-likelihoods and greedy (or sampled) generation.

Both sort items by length, pad on the left with explicit position ids, run without gradients, and
return results in the input order. Scoring asks the model only for the logits of the answer positions
(``logits_to_keep``), so the vocabulary projection and log-softmax run on answer tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from ..data.chat import IGNORE, Encoded, pad
from ..progress import progress_bar


@dataclass
class Scored:
    """Summed answer NLL over ``n_tokens`` labelled tokens."""

    nll_sum: float
    n_tokens: int

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.n_tokens if self.n_tokens else float("inf")

    @property
    def prob(self) -> float:
        """p̄ = exp(-mean answer-token NLL)."""
        return math.exp(-self.mean_nll) if self.n_tokens else 0.0


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _left_batch(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = pad(seqs, pad_id, side="left").to(device)
    mask = pad([[1] * len(s) for s in seqs], 0, side="left").to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def score(
    model: PreTrainedModel,
    examples: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 16,
    description: str | None = None,
    slice_logits: bool = True,
) -> list[Scored]:
    """Answer NLL of every example (labels != -100), batched; no per-item model calls."""
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    results: list[Scored | None] = [None] * len(examples)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(description or "scoring", total=len(examples)) if description else None
        for idx in _batches(order, batch_size):
            seqs = [examples[i].input_ids for i in idx]
            labels = pad([examples[i].labels for i in idx], IGNORE, side="left").to(device)
            ids, mask, pos = _left_batch(seqs, pad_id, device)
            # The first labelled position across the batch bounds the logits we need.
            labelled = (labels != IGNORE).any(0).nonzero()
            # position 0 has no predecessor, so nothing predicts it: at most T-1 logits are needed
            first = max(int(labelled[0]), 1) if len(labelled) else labels.shape[1] - 1
            keep = labels.shape[1] - first + 1
            if slice_logits:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits
            else:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -keep:]
            # logits[:, j] predicts token at column (T - keep + j + 1)
            target = labels[:, labels.shape[1] - keep + 1 :]
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            tgt = target.clamp(min=0)
            tok_nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            valid = target != IGNORE
            sums = (tok_nll * valid).sum(-1)
            counts = valid.sum(-1)
            for j, i in enumerate(idx):
                results[i] = Scored(float(sums[j]), int(counts[j]))
            if task is not None:
                bar.advance(task, len(idx))
    model.train(was_training)
    return results  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _newline_ids(tok: PreTrainedTokenizerBase) -> frozenset[int]:
    return frozenset(i for t, i in tok.get_vocab().items() if "\n" in tok.convert_tokens_to_string([t]))


class _StopOnIds(StoppingCriteria):
    """Per-row stop once any generated token is in ``ids`` (e.g. a newline for RWKU)."""

    def __init__(self, ids: frozenset[int], prompt_width: int):
        self.ids = torch.tensor(sorted(ids))
        self.width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.width :]
        return torch.isin(new, self.ids.to(new.device)).any(-1)


def end_of_turn_ids(tok: PreTrainedTokenizerBase) -> list[int]:
    """EOS plus the chat template's end-of-turn tokens that exist in the vocabulary."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and i is not None and i >= 0:
            ids.add(i)
    return sorted(ids)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 64,
    batch_size: int = 32,
    stop_at_newline: bool = False,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    description: str | None = None,
) -> list[str]:
    """Generate continuations of token-id prompts, batched with left padding; returns stripped text
    cut at end-of-turn (and at the first newline when ``stop_at_newline``)."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str | None] = [None] * len(prompts)
    stop_ids = end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(description or "generating", total=len(prompts)) if description else None
        for idx in _batches(order, batch_size):
            ids, mask, _ = _left_batch([prompts[i] for i in idx], pad_id, device)
            criteria = StoppingCriteriaList([_StopOnIds(_newline_ids(tokenizer), ids.shape[1])]) if stop_at_newline else None
            kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
                stopping_criteria=criteria,
                **kwargs,
            )
            for j, i in enumerate(idx):
                new = gen[j, ids.shape[1] :].tolist()
                cut = next((k for k, t in enumerate(new) if t in stop_ids), len(new))
                text = tokenizer.decode(new[:cut], skip_special_tokens=True)
                if stop_at_newline:
                    text = text.split("\n", 1)[0]
                out[i] = text.strip()
            if task is not None:
                bar.advance(task, len(idx))
    model.train(was_training)
    return out  # type: ignore[return-value]
