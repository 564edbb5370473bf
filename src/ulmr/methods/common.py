"""Shared loss pieces: one forward per batch part, answer-token NLL, sequence log-probs and the answer KL.

A batch holds parts named by prefix (``forget``, ``retain``, ``pref``, ``original``), each with ``<part>_input_ids``,
``<part>_attention_mask`` and ``<part>_labels`` (-100 on prompt and padding). Logits at position t
predict the token at t+1, so labels are shifted by one before they are compared.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..data.chat import IGNORE, answer_window


class Reference(Protocol):
    """The frozen model before unlearning; ``logits`` runs without gradients."""

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor: ...


def has_part(batch: dict, part: str) -> bool:
    return f"{part}_input_ids" in batch


def part_logits(model, batch: dict, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of ``model`` on one batch part over the answer window, and the labels of that window
    (aligned as in a full forward: ``logits[:, t]`` predicts ``labels[:, t + 1]``)."""
    labels = batch[f"{part}_labels"]
    keep = answer_window(labels)
    logits = model(
        input_ids=batch[f"{part}_input_ids"], attention_mask=batch[f"{part}_attention_mask"], logits_to_keep=keep
    ).logits
    return logits, labels[:, labels.shape[1] - keep :]


def ref_part_logits(ref: Reference, batch: dict, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`part_logits` for the reference (no gradients)."""
    labels = batch[f"{part}_labels"]
    keep = answer_window(labels)
    logits = ref.logits(batch[f"{part}_input_ids"], batch[f"{part}_attention_mask"], logits_to_keep=keep)
    return logits, labels[:, labels.shape[1] - keep :]


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position answer NLL (0 off the answer) and the answer mask, both ``[B, T-1]``.

    Only labelled positions go through the (float32) log-softmax."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    nll = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    nll[mask] = F.cross_entropy(logits[mask].float(), labels[mask], reduction="none")
    return nll, mask


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token mean of the answer NLL over the whole batch."""
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp(min=1)


def sequence_logp(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(y|x) per row: the sum over answer tokens (EOS / end-of-turn included), shape ``[B]``."""
    nll, _ = token_nll(logits, labels)
    return -nll.sum(-1)


def part_nll(model, batch: dict, part: str) -> torch.Tensor:
    """Token-mean answer NLL of one batch part."""
    return mean_nll(*part_logits(model, batch, part))


def part_logp(model, batch: dict, part: str) -> torch.Tensor:
    """Sequence answer log-probs of one batch part, ``[B]``."""
    return sequence_logp(*part_logits(model, batch, part))


def npo_term(model, ref: Reference | None, batch: dict, part: str, beta: float) -> torch.Tensor:
    """The NPO loss on one part: −(2/β)·log σ(−β(log π_θ(y) − log π_ref(y))), batch mean.

    Its gradient is 2σ(β·ratio)·∇log π_θ(y): gradient ascent on y's sequence log-prob that fades as y
    falls below the reference (Zhang et al., 2024)."""
    ratio = part_logp(model, batch, part) - ref_part_logp(ref, batch, part)
    return -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()


def ref_part_logp(ref: Reference | None, batch: dict, part: str) -> torch.Tensor:
    """Reference sequence log-probs: precomputed ``<part>_ref_logp`` when the batch carries them, else
    one no-grad pass of ``ref``."""
    key = f"{part}_ref_logp"
    if key in batch:
        return batch[key]
    if ref is None:
        raise ValueError(f"batch has no '{key}' and no reference model was given")
    with torch.no_grad():
        return sequence_logp(*ref_part_logits(ref, batch, part))


def answer_kl(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_θ) of the next-token distributions, averaged over answer tokens."""
    mask = labels[:, 1:] != IGNORE
    ref_logp = F.log_softmax(ref_logits[:, :-1][mask].float(), -1)
    logp = F.log_softmax(logits[:, :-1][mask].float(), -1)
    return F.kl_div(logp, ref_logp, log_target=True, reduction="sum") / mask.sum().clamp(min=1)
