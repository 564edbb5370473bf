"""Shared batched inference: answer log-likelihoods, greedy (or sampled) generation, cached greedy answers.

Evaluation, training, generation and the metrics all run the model through this module.

Scoring and generation sort items by length, pad on the left with explicit position ids, run without gradients, and
return results in the input order. Scoring asks the model only for the logits of the answer positions
(``logits_to_keep``), so the vocabulary projection and log-softmax run on answer tokens only; answers that share a
prompt are scored as one token trie, so the prompt and the answers' common openings run once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import Cache, DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from .atomic import read_jsonl_tolerant, write_jsonl
from .data.chat import IGNORE, ChatFormat, Encoded, answer_window, pad
from .decoding import Sampler, argmax, decode, plain_decoding_supported
from .progress import progress_bar


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


# Decoding keeps one position's logits per row where scoring keeps every answer position's, so a generation batch
# of 4x the scoring batch holds about as much memory; on 2 CPU cores decoding 64 rows at once is ~1.4x faster per
# reply than 16 (docs/performance.md).
GENERATION_BATCH_FACTOR = 4


def generation_batch(scoring_batch: int) -> int:
    """Evaluation's generation batch size for a given scoring batch size."""
    return scoring_batch * GENERATION_BATCH_FACTOR


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# A batch takes the next (shorter) row only while padding stays at most this share of its padded tokens.
MAX_PADDING_SHARE = 0.25


def budget_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches, longest first, of at most ``batch_size`` rows whose padding stays at
    most :data:`MAX_PADDING_SHARE` of the batch's padded tokens: a row far longer than the rest (an MMLU prompt
    with long shots) no longer pads a whole batch to its length. Equal lengths give plain ``batch_size`` batches."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    real = 0
    for i in order:
        b = batches[-1] if batches else []
        padded = lengths[b[0]] * (len(b) + 1) if b else 0
        if b and len(b) < batch_size and padded - (real + lengths[i]) <= MAX_PADDING_SHARE * padded:
            b.append(i)
            real += lengths[i]
        else:
            batches.append([i])
            real = lengths[i]
    return batches


def _left_batch(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = pad(seqs, pad_id, side="left").to(device)
    mask = pad([[1] * len(s) for s in seqs], 0, side="left").to(device)
    return ids, mask, _positions(mask)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: each row counts from 0 at its first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def score(
    model: PreTrainedModel,
    examples: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 16,
    description: str | None = None,
    slice_logits: bool = True,
    share_prefixes: bool = True,
) -> list[Scored]:
    """Answer NLL of every example (labels != -100), batched; no per-item model calls.

    With ``share_prefixes``, examples whose prompts (the tokens before the answer) are equal are scored as one
    token trie (:func:`_score_trie`): the prompt, and every answer prefix several of its answers share (TOFU's
    perturbations often open alike), run through the model once, packed into rows without padding. The NLLs
    equal the plain path's up to floating-point rounding. Examples with a prompt of their own, or none (a text
    scored whole, as MIA does), and models whose attention cannot take the trie's mask
    (:func:`trie_scoring_supported`) take the plain padded batches, where nothing would be shared.
    """
    tries = _sharing_tries(examples) if share_prefixes and trie_scoring_supported(model) else []
    if not tries:
        return _score_plain(model, examples, pad_id, batch_size, description, slice_logits)
    results: dict[int, Scored] = _score_trie(model, examples, tries, batch_size, description)
    rest = [i for i in range(len(examples)) if i not in results]
    results.update(zip(rest, _score_plain(model, [examples[i] for i in rest], pad_id, batch_size, description, slice_logits)))
    return [results[i] for i in range(len(examples))]


def _score_plain(model: PreTrainedModel, examples: Sequence[Encoded], pad_id: int, batch_size: int,
                 description: str | None, slice_logits: bool) -> list[Scored]:
    """:func:`score` by left-padded batches closed by a padding budget, each sequence read whole."""
    device = next(model.parameters()).device
    results: list[Scored | None] = [None] * len(examples)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(description or "scoring", total=len(examples)) if description and examples else None
        for idx in budget_batches([len(e.input_ids) for e in examples], batch_size):
            seqs = [examples[i].input_ids for i in idx]
            # a first token has nothing before it to predict it (left padding would put a pad there)
            labels = pad([[IGNORE][: len(examples[i].labels)] + examples[i].labels[1:] for i in idx], IGNORE, side="left").to(device)
            ids, mask, pos = _left_batch(seqs, pad_id, device)
            keep = answer_window(labels)
            if slice_logits:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits
            else:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -keep:]
            # logits[:, j] predicts token at column (T - keep + j + 1)
            for i, scored in zip(idx, _nll_rows(logits[:, :-1], labels[:, labels.shape[1] - keep + 1 :])):
                results[i] = scored
            if task is not None:
                bar.advance(task, len(idx))
    model.train(was_training)
    return results  # type: ignore[return-value]


def _nll_rows(logits: torch.Tensor, target: torch.Tensor) -> list[Scored]:
    """Summed NLL of the labelled targets per row (logits[:, j] predicts target[:, j])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    tok_nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    valid = target != IGNORE
    sums = tok_nll.masked_fill(~valid, 0.0).sum(-1)  # not a product: NaN * 0 is NaN
    return [Scored(float(s), int(c)) for s, c in zip(sums, valid.sum(-1))]


def _prompt_end(example: Encoded) -> int:
    """Index of the first labelled (answer) token; 0 when nothing is labelled."""
    return next((t for t, label in enumerate(example.labels) if label != IGNORE), 0)


def _prompt_groups(examples: Sequence[Encoded]) -> list[list[int]]:
    """The examples' indices grouped by equal prompt, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(tuple(e.input_ids[: _prompt_end(e)]), []).append(i)
    return list(groups.values())


# A prompt's answers go to the trie only when it saves at least this share of their tokens: a few shared tokens
# (texts scored whole share at most their first token) do not pay for the trie rows' dense attention mask
# (MIA's 60 RWKU texts: 28.5 s by trie, 25.1 s in padded batches; docs/performance.md).
TRIE_MIN_SAVING = 0.25


def _sharing_tries(examples: Sequence[Encoded]) -> list[tuple[list[int], "Trie"]]:
    """The token tries of the prompts several examples share (each with its examples' indices), where the trie
    saves ``TRIE_MIN_SAVING`` of their tokens."""
    out = []
    for g in (g for g in _prompt_groups(examples) if len(g) > 1):
        trie = token_trie([examples[i].input_ids for i in g])
        if len(trie.tokens) <= (1 - TRIE_MIN_SAVING) * sum(len(examples[i].input_ids) for i in g):
            out.append((g, trie))
    return out


@dataclass
class Trie:
    """The token trie of some sequences: one node per distinct prefix. ``parents[n]`` is the node before ``n``
    (-1 at a root; a parent always precedes its children), ``paths[s][k]`` the node of sequence s's k-th token."""

    tokens: list[int]
    parents: list[int]
    paths: list[list[int]]


def token_trie(seqs: Sequence[Sequence[int]]) -> Trie:
    """The trie of ``seqs``: a prefix that several sequences share is one run of nodes."""
    trie, index = Trie([], [], []), {}
    for seq in seqs:
        path, node = [], -1
        for t in seq:
            if (node, t) not in index:
                index[(node, t)] = len(trie.tokens)
                trie.tokens.append(t)
                trie.parents.append(node)
            node = index[(node, t)]
            path.append(node)
        trie.paths.append(path)
    return trie


# The trie scorer packs tries into rows of about this many tokens per answer of the scoring batch (384 at batch 16).
# Its attention runs over the whole row under a dense mask, a cost that grows with the square of the row's length:
# on 2 CPU cores rows of 384 tokens scored TOFU mini 1.2x faster than rows of 1024 (docs/performance.md).
TRIE_ROW_TOKENS_PER_ANSWER = 24


def _trie_rows(tries: Sequence[tuple[list[int], Trie]], row_tokens: int) -> list[list[tuple[list[int], Trie]]]:
    """The prompt tries (each with its examples' indices) packed first-fit, largest first, into rows of at most
    ``row_tokens`` nodes; a larger trie gets a row of its own."""
    tries = sorted(tries, key=lambda gt: -len(gt[1].tokens))
    rows: list[list[tuple[list[int], Trie]]] = []
    sizes: list[int] = []
    for g, trie in tries:
        at = next((r for r, s in enumerate(sizes) if s + len(trie.tokens) <= row_tokens), None)
        if at is None:
            rows.append([]); sizes.append(0); at = len(rows) - 1  # noqa: E702
        rows[at].append((g, trie)); sizes[at] += len(trie.tokens)  # noqa: E702
    return rows


def _row_tensors(row: list[tuple[list[int], Trie]], dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, position ids, additive 4D attention mask) of one packed row: every node sees itself and its
    ancestors, and sits at the position of its depth, so each path reads exactly as its own sequence would."""
    tokens = [t for _, trie in row for t in trie.tokens]
    parents = [p + off if p >= 0 else -1 for off, (_, trie) in zip(_offsets(row), row) for p in trie.parents]
    seen = torch.zeros(len(tokens), len(tokens), dtype=torch.bool)
    depth: list[int] = []
    for n, p in enumerate(parents):
        if p >= 0:
            seen[n] = seen[p]
        seen[n, n] = True
        depth.append(depth[p] + 1 if p >= 0 else 0)
    mask = torch.zeros(1, 1, len(tokens), len(tokens), dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)
    return torch.tensor([tokens], device=device), torch.tensor([depth], device=device), mask.to(device)


def _offsets(row: list[tuple[list[int], Trie]]) -> list[int]:
    """Where each trie of a row starts."""
    out, at = [], 0
    for _, trie in row:
        out.append(at)
        at += len(trie.tokens)
    return out


def _score_row(model: PreTrainedModel, examples: Sequence[Encoded], row: list[tuple[list[int], Trie]], device) -> dict[int, Scored]:
    """Scores of the examples of one packed row, from one forward: the logits of a node predict its children."""
    wanted: dict[int, tuple[list[int], list[int]]] = {}  # example -> (predicting nodes, target tokens)
    for off, (g, trie) in zip(_offsets(row), row):
        for i, path in zip(g, trie.paths):
            labels = examples[i].labels
            ks = [k for k in range(1, len(path)) if labels[k] != IGNORE]
            wanted[i] = ([off + path[k - 1] for k in ks], [labels[k] for k in ks])
    keep = sorted({n for nodes, _ in wanted.values() for n in nodes})
    ids, pos, mask = _row_tensors(row, next(model.parameters()).dtype, device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                   logits_to_keep=torch.tensor(keep or [0], device=device)).logits[0].float()
    log_z = torch.logsumexp(logits, dim=-1)
    column = {n: j for j, n in enumerate(keep)}
    out: dict[int, Scored] = {}
    for i, (nodes, targets) in wanted.items():
        js = torch.tensor([column[n] for n in nodes], dtype=torch.long, device=logits.device)
        ts = torch.tensor(targets, dtype=torch.long, device=logits.device)
        out[i] = Scored(float((log_z[js] - logits[js, ts]).sum()), len(nodes))
    return out


def trie_scoring_supported(model: PreTrainedModel) -> bool:
    """True for models whose attention takes a custom 4D mask over full (not sliding, not linear) attention."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - a config the cache cannot read: not a model this path knows
        return False
    return not any(getattr(cache, "is_sliding", [])) and not any(getattr(cache, "is_linear", []) or [])


def _score_trie(model: PreTrainedModel, examples: Sequence[Encoded], tries: Sequence[tuple[list[int], Trie]],
                batch_size: int, description: str | None) -> dict[int, Scored]:
    """:func:`score` of the examples the prompt ``tries`` hold, by index: the prompt, and every answer prefix that
    several answers of one prompt share, run through the model once."""
    device = next(model.parameters()).device
    results: dict[int, Scored] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), progress_bar() as bar:
            task = bar.add_task(description, total=sum(len(g) for g, _ in tries)) if description else None
            for row in _trie_rows(tries, TRIE_ROW_TOKENS_PER_ANSWER * batch_size):
                results.update(_score_row(model, examples, row, device))
                if task is not None:
                    bar.advance(task, sum(len(g) for g, _ in row))
    finally:
        model.train(was_training)
    return results


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


MIN_SHARED_PREFIX = 16  # shorter shared contexts are not worth a separate prefill


def _prefill(model: PreTrainedModel, contexts: Sequence[tuple[int, ...]], device) -> Cache | None:
    """Key/value cache of equal-length ``contexts`` (one row each), or None for caches that cannot be
    reused this way (sliding-window or linear-attention layers)."""
    ids = torch.tensor(contexts, dtype=torch.long, device=device)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = out["cache"] if "cache" in out else out.get("past_key_values")
    if not isinstance(cache, Cache) or any(cache.is_sliding) or any(cache.is_linear):
        return None
    return cache


def _shared_context(prompts: list[Sequence[int]], context_lens: list[int]) -> int:
    """The common context length of a batch's prompts, or 0 when they cannot share a prefill."""
    n = context_lens[0]
    if n < MIN_SHARED_PREFIX or any(c != n for c in context_lens) or any(len(p) <= n for p in prompts):
        return 0
    return n


ContextStore = dict  # (weights fingerprint, context token ids) -> that context's 1-row cache (None: not reusable)


def _fingerprint(model: PreTrainedModel) -> tuple:
    """Changes when the weights change (training, averaging, another model), so stored contexts are never stale."""
    params = list(model.parameters())
    return tuple((p.data_ptr(), float(p.detach().sum(dtype=torch.float32))) for p in (params[0], params[-1]))


def _context_cache(model: PreTrainedModel, row_contexts: list[tuple[int, ...]], store: ContextStore, device) -> Cache | None:
    """A cache holding each row's context, stacked from one 1-row prefill per distinct context; the prefills
    are kept in ``store`` for later calls (a stage's retry rounds reuse its first round's contexts)."""
    mark = _fingerprint(model)
    for stale in [k for k in store if k[0] != mark]:
        del store[stale]
    for c in dict.fromkeys(row_contexts):
        if (mark, c) not in store:
            store[(mark, c)] = _prefill(model, [c], device)
    per_row = [store[(mark, c)] for c in row_contexts]
    if any(c is None for c in per_row):
        return None
    batch = copy.deepcopy(per_row[0])
    for i, layer in enumerate(batch.layers):
        layer.keys = torch.cat([c.layers[i].keys for c in per_row])
        layer.values = torch.cat([c.layers[i].values for c in per_row])
    return batch


def _prefix_batch(prompts: list[Sequence[int]], n: int, pad_id: int, device):
    """Inputs laid out as [context | pads | tail]: the first ``n`` tokens come from a context cache.

    The pads sit between the cached context and each prompt's own tail and are masked out; positions
    come from the mask, so every row sees exactly the token sequence (and positions) of its whole prompt.
    """
    tails = [p[n:] for p in prompts]
    tail_ids, tail_mask, _ = _left_batch(tails, pad_id, device)
    context = torch.tensor([list(p[:n]) for p in prompts], dtype=torch.long, device=device)
    return torch.cat([context, tail_ids], dim=1), torch.cat([torch.ones_like(context), tail_mask], dim=1)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 64,
    batch_size: int = 32,
    stop_at_newline: bool = False,
    stop_ids: Sequence[int] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    description: str | None = None,
    context_lens: Sequence[int] | None = None,
    context_store: ContextStore | None = None,
) -> list[str]:
    """Generate continuations of token-id prompts, batched with left padding; returns stripped text
    cut at end-of-turn (and at the first newline when ``stop_at_newline``). ``stop_ids`` replaces the
    end-of-turn ids (:func:`end_of_turn_ids`) as the tokens that end a reply (RWKU's reference terminators).

    ``context_lens[i]`` (optional) says how many leading tokens of prompt ``i`` are a context that other
    prompts may share (few-shot turns). A batch whose prompts have contexts of one length computes each
    distinct context once and generates from its cached keys/values; batches, their order and the
    sampling stream are the same as without it, so replies are the same up to floating-point rounding.
    ``context_store`` keeps those contexts for later calls with the same weights.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str | None] = [None] * len(prompts)
    stop_ids = sorted(set(stop_ids)) if stop_ids else end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    store: ContextStore = context_store if context_store is not None else {}
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(description or "generating", total=len(prompts)) if description else None
        for idx in _batches(order, batch_size):
            batch = [prompts[i] for i in idx]
            n = _shared_context(batch, [context_lens[i] for i in idx]) if context_lens is not None else 0
            cache = _context_cache(model, [tuple(p[:n]) for p in batch], store, device) if n else None
            if cache is not None:
                ids, mask = _prefix_batch(batch, n, pad_id, device)
                extra = {"cache": cache}
            else:
                ids, mask, _ = _left_batch(batch, pad_id, device)
                extra = {}
            replies = None
            if plain_decoding_supported(model, do_sample):
                ends = set(stop_ids) | (_newline_ids(tokenizer) if stop_at_newline else set())
                pick = Sampler.for_model(model, temperature, top_p) if do_sample else argmax
                replies = decode(model, ids, mask, _positions(mask), max_new_tokens, ends, pick,
                                 extra.get("cache"))
            if replies is None:
                replies = _hf_generate(model, tokenizer, ids, mask, extra, max_new_tokens, stop_ids, pad_id,
                                       stop_at_newline, do_sample, temperature, top_p)
            for new, i in zip(replies, idx):
                cut = next((k for k, t in enumerate(new) if t in stop_ids), len(new))
                text = tokenizer.decode(new[:cut], skip_special_tokens=True)
                if stop_at_newline:
                    text = text.split("\n", 1)[0]
                out[i] = text.strip()
            if task is not None:
                bar.advance(task, len(idx))
    model.train(was_training)
    return out  # type: ignore[return-value]


def _hf_generate(model, tokenizer, ids, mask, extra: dict, max_new_tokens: int, stop_ids: list[int], pad_id: int,
                 stop_at_newline: bool, do_sample: bool, temperature: float, top_p: float) -> list[list[int]]:
    """New token ids of one batch from ``model.generate`` (sampling, prefix caches, custom generation configs)."""
    criteria = StoppingCriteriaList([_StopOnIds(_newline_ids(tokenizer), ids.shape[1])]) if stop_at_newline else None
    kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
    gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                         pad_token_id=pad_id, stopping_criteria=criteria, **kwargs, **extra)
    return gen[:, ids.shape[1]:].tolist()


def cached_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], cache: Path | None,
                   max_new_tokens: int = 64, batch_size: int = 32, description: str | None = None,
                   post: Callable[[str], str] | None = None, tag: str = "") -> tuple[list[str], int]:
    """Greedy chat answers to ``questions`` (ChatFormat's fixed system text), and how many were generated now.

    With ``cache`` (JSONL rows of question / answer / model) the answers cached under the same ``tag`` are
    reused and only the missing ones generated, then the cache is rewritten atomically. ``post`` (e.g. a
    trim) applies before caching."""
    rows = read_jsonl_tolerant(cache) if cache else []
    cached = {r["question"]: r["answer"] for r in rows if "question" in r and "answer" in r and r.get("model", "") == tag}
    missing = list(dict.fromkeys(q for q in questions if q not in cached))
    if missing:
        fmt = ChatFormat(tokenizer)
        answers = generate(model, tokenizer, [fmt.prompt_ids(q) for q in missing], max_new_tokens=max_new_tokens,
                           batch_size=batch_size, description=description)
        cached.update((q, post(a) if post else a) for q, a in zip(missing, answers))
        if cache:
            write_jsonl(cache, [{"question": q, "answer": a, **({"model": tag} if tag else {})} for q, a in cached.items()])
    return [cached[q] for q in questions], len(missing)
