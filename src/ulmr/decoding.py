"""Greedy or sampled decoding with a preallocated key/value cache and finished rows dropped from the batch.

``model.generate`` grows its cache by concatenation (every step copies every layer's keys and values: about a
fifth of CPU decoding time for a 135M model at batch 64) and keeps decoding rows that have already ended. This
loop writes each step into buffers sized once, and compacts the batch when enough rows have ended. Each row's
arithmetic is that of ``generate`` (same prompt layout, positions, mask; argmax, or temperature, top-k and top-p
warpers, then one draw per row), so greedy replies are the same; sampled replies come from the same
distributions as ``generate``'s but not from the same draws (:class:`Sampler`).
:func:`plain_decoding_supported` says when a model's generation config asks for more (repetition penalties, forced
tokens, beams ...) and ``generate`` must be used instead.
"""

from __future__ import annotations

from typing import Callable, Collection

import torch
from transformers import Cache, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

# Generation-config fields that make greedy search differ from argmax of the raw logits, with their no-op values.
_NEUTRAL = {
    "repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
    "min_length": (None, 0), "min_new_tokens": (None, 0), "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "sequence_bias": (None,), "exponential_decay_length_penalty": (None,), "guidance_scale": (None, 1.0),
    "renormalize_logits": (None, False), "num_beams": (None, 1), "penalty_alpha": (None,), "dola_layers": (None,),
    "encoder_repetition_penalty": (None, 1.0), "encoder_no_repeat_ngram_size": (None, 0), "stop_strings": (None,),
}
# Fields that only sampling reads (temperature, top_k and top_p are applied by :class:`Sampler`).
_NEUTRAL_SAMPLING = {"min_p": (None, 0.0), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
                     "eta_cutoff": (None, 0.0), "top_h": (None,)}
DEFAULT_TOP_K = 50  # what ``generate`` applies when neither the call nor the model's config sets top_k
# Compact the batch once this share of its rows has ended: a compaction copies the whole cache once, about
# what a few rows cost in a few decoding steps.
COMPACT_SHARE = 0.25


def plain_decoding_supported(model: PreTrainedModel, sample: bool = False) -> bool:
    """True when the model's generation config adds nothing to argmax (or to temperature/top-k/top-p sampling)."""
    cfg = getattr(model, "generation_config", None)
    if cfg is None:
        return True
    fields = {**_NEUTRAL, **(_NEUTRAL_SAMPLING if sample else {})}
    return all(getattr(cfg, name, None) in neutral for name, neutral in fields.items())


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """Greedy choice per row of float32 next-token logits [rows, vocab]."""
    return logits.argmax(-1)


class Sampler:
    """``generate``'s sampling step: temperature, top-k and top-p (in that order), then one draw per row.

    With a top-k (``generate`` applies 50 unless told otherwise) the warpers run on each row's k best logits
    instead of the whole vocabulary, and the draw is among those k: the same distribution as ``generate``'s
    (up to ties at the k-th logit, which ``generate`` keeps all of), at a fraction of the cost (sorting the
    vocabulary for top-p took longer than a decoding step of the 135M model); the draws themselves differ.
    Without a top-k, ``generate``'s own warpers run on the whole vocabulary.
    """

    def __init__(self, temperature: float, top_p: float, top_k: int | None):
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        self.warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []

    @classmethod
    def for_model(cls, model: PreTrainedModel, temperature: float, top_p: float) -> "Sampler":
        top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
        return cls(temperature, top_p, DEFAULT_TOP_K if top_k is None else top_k)

    def candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(token ids, probabilities) of each row's candidates after the warpers: [rows, k] each."""
        if not self.top_k:
            for warp in self.warpers:
                logits = warp(None, logits)
            return torch.arange(logits.shape[-1], device=logits.device).expand_as(logits), logits.softmax(-1)
        values, ids = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)
        if self.temperature != 1.0:
            values = values / self.temperature
        if self.top_p < 1.0:  # generate's TopPLogitsWarper on the ascending order: drop the tail holding <= 1 - top_p
            ascending = values.flip(-1)
            drop = ascending.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[:, -1] = False
            values = ascending.masked_fill(drop, float("-inf")).flip(-1)
        return ids, values.softmax(-1)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        ids, probs = self.candidates(logits)
        return ids.gather(-1, torch.multinomial(probs, num_samples=1)).squeeze(-1)


class _BufferedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views into buffers reserved once; ``update`` writes in place."""

    def reserve(self, extra: int) -> None:
        b, h, t, d = self.keys.shape
        self._k = self.keys.new_empty(b, h, t + extra, d)
        self._v = self.values.new_empty(b, h, t + extra, d)
        self._k[:, :, :t] = self.keys
        self._v[:, :, :t] = self.values
        self._filled = t

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        end = self._filled + n
        self._k[:, :, self._filled:end] = key_states
        self._v[:, :, self._filled:end] = value_states
        self._filled = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[:, :, : self._filled], self._v[:, :, : self._filled]


def _plain_layers(cache: Cache) -> bool:
    """True when every layer is a plain DynamicLayer (not sliding windows, linear attention, quantised caches)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _buffered(cache: Cache, extra: int) -> bool:
    """Turn every layer of a freshly prefilled cache into a :class:`_BufferedLayer`; False if a layer is not a
    plain, filled DynamicLayer, which this loop does not handle."""
    if not _plain_layers(cache) or not all(layer.is_initialized for layer in cache.layers):
        return False
    for layer in cache.layers:
        layer.__class__ = _BufferedLayer
        layer.reserve(extra)
    return True


def decode(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, max_new_tokens: int,
           stop_ids: Collection[int], pick: Callable[[torch.Tensor], torch.Tensor] = argmax,
           cache: Cache | None = None) -> list[list[int]] | None:
    """Continuations of a left-padded batch (``ids``, ``mask``, ``pos``), each cut after its first token in
    ``stop_ids`` (that token included) or at ``max_new_tokens``; ``pick`` chooses each next token (:func:`argmax`
    or a :class:`Sampler`). ``cache`` may hold the keys/values of the first columns of ``ids`` (a shared context),
    one row per batch row. None when the model's cache cannot be buffered."""
    if cache is not None and not _plain_layers(cache):
        return None  # checked before the forward, which would extend the caller's cache
    start = cache.get_seq_length() if cache is not None else 0
    out = model(input_ids=ids[:, start:], attention_mask=mask, position_ids=pos[:, start:], cache=cache, use_cache=True,
                logits_to_keep=1)
    cache = out["cache"] if "cache" in out else out.get("past_key_values")
    if not isinstance(cache, Cache) or not _buffered(cache, max_new_tokens):
        return None
    stops = torch.tensor(sorted(stop_ids), device=ids.device)
    rows = torch.arange(ids.shape[0], device=ids.device)  # batch row -> input row, shrinks as rows end
    replies: list[list[int]] = [[] for _ in range(ids.shape[0])]
    token = pick(out.logits[:, -1].float())
    next_pos = pos[:, -1] + 1
    ended = torch.zeros_like(token, dtype=torch.bool)
    for step in range(max_new_tokens):
        for r, t in zip(rows.tolist(), token.tolist()):
            replies[r].append(t)
        ended |= torch.isin(token, stops)
        if step == max_new_tokens - 1 or bool(ended.all()):
            break
        if int(ended.sum()) >= max(1, COMPACT_SHARE * len(rows)):
            keep = (~ended).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, token, next_pos, mask, ended = rows[keep], token[keep], next_pos[keep], mask[keep], ended[keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos[:, None], cache=cache,
                       use_cache=True).logits
        # rows that ended but were not dropped yet keep decoding; their extra tokens are cut below
        token = pick(logits[:, -1].float())
        next_pos = next_pos + 1
    ends = set(stop_ids)
    return [_cut(r, ends) for r in replies]


def _cut(reply: list[int], stops: set[int]) -> list[int]:
    """``reply`` up to and including its first stop token."""
    end = next((k for k, t in enumerate(reply) if t in stops), len(reply) - 1)
    return reply[: end + 1]
