"""The greedy decoding loop (preallocated cache, finished rows dropped) against ``model.generate``."""

from __future__ import annotations

import pytest
import torch

from ulmr import decoding, inference
from ulmr.data.chat import ChatFormat

QUESTIONS = ["Who wrote Hamlet?", "What is the capital of France?", "Name a prime number.",
             "Why is the sky blue?", "What do bees make?", "Where is Mount Everest?"]


def _hf_only(monkeypatch):
    monkeypatch.setattr(inference, "plain_decoding_supported", lambda model, sample=False: False)


def _prompts(tok):
    return [ChatFormat(tok).prompt_ids(q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def lively():
    """A random 2-layer Llama over 40 tokens with large weights, so that greedy replies vary from row to row."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, initializer_range=0.5, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return LlamaForCausalLM(cfg).eval()


def _hf_replies(model, ids, mask, new, stops):
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                             eos_token_id=stops, pad_token_id=0)[:, ids.shape[1]:].tolist()
    return [decoding._cut(r, set(stops)) if stops else r for r in out]


def test_greedy_loop_equals_generate_with_rows_ending_at_different_steps(lively, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 40, (n,), generator=gen).tolist() for n in (5, 9, 3, 7, 12, 4, 8, 6)]
    ids, mask, pos = inference._left_batch(prompts, 0, "cpu")
    free = _hf_replies(lively, ids, mask, 16, [])
    stops = sorted({free[r][1 + 2 * r] for r in range(4)} - {0})  # rows end at different steps, some never
    compactions = []
    real = decoding._BufferedLayer.batch_select_indices
    monkeypatch.setattr(decoding._BufferedLayer, "batch_select_indices",
                        lambda self, idx: compactions.append(len(idx)) or real(self, idx))
    with torch.inference_mode():
        ours = decoding.decode(lively, ids, mask, pos, 16, stops)
    assert compactions, "no rows were dropped: the test does not exercise the compaction"
    assert ours == _hf_replies(lively, ids, mask, 16, stops)
    assert len({len(r) for r in ours}) > 2


def test_generate_with_the_loop_equals_generate_at_newlines_and_end_of_turn(tiny, monkeypatch):
    model, tok = tiny
    prompts = _prompts(tok)
    ours = [inference.generate(model, tok, prompts, max_new_tokens=10, batch_size=4, stop_at_newline=nl) for nl in (False, True)]
    _hf_only(monkeypatch)
    assert ours == [inference.generate(model, tok, prompts, max_new_tokens=10, batch_size=4, stop_at_newline=nl)
                    for nl in (False, True)]


def test_cut_keeps_the_first_stop_token():
    assert decoding._cut([5, 7, 2, 9, 2], {2}) == [5, 7, 2]
    assert decoding._cut([5, 7, 9], {2}) == [5, 7, 9]


@pytest.mark.parametrize("field,value", [("repetition_penalty", 1.3), ("no_repeat_ngram_size", 2), ("min_new_tokens", 3)])
def test_generation_configs_beyond_argmax_use_generate(tiny, monkeypatch, field, value):
    model, tok = tiny
    assert decoding.plain_decoding_supported(model)
    monkeypatch.setattr(model.generation_config, field, value)
    assert not decoding.plain_decoding_supported(model)
    calls = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    inference.generate(model, tok, _prompts(tok)[:2], max_new_tokens=4)
    assert calls


@pytest.mark.parametrize("temperature,top_p,top_k", [(0.7, 0.9, 50), (1.0, 1.0, 50), (1.3, 0.5, 5), (0.7, 0.9, None)])
def test_sampler_draws_from_generates_distribution(temperature, top_p, top_k):
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(3)) * 3
    hf = logits.clone()
    for warp in ([TemperatureLogitsWarper(temperature)] + ([TopKLogitsWarper(top_k)] if top_k else [])
                 + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])):
        hf = warp(None, hf)
    sampler = decoding.Sampler(temperature, top_p, top_k)
    ids, probs = sampler.candidates(logits)
    ours = torch.zeros_like(logits).scatter_(1, ids, probs)
    assert torch.allclose(ours, hf.softmax(-1), atol=1e-6)
    torch.manual_seed(0)
    drawn = sampler(logits)
    assert bool((hf.softmax(-1).gather(1, drawn[:, None]) > 0).all())  # every draw is a candidate of generate's


def test_sampling_through_the_loop_keeps_to_the_candidates(lively):
    gen = torch.Generator().manual_seed(2)
    prompts = [torch.randint(2, 40, (n,), generator=gen).tolist() for n in (5, 9, 3, 7)]
    ids, mask, pos = inference._left_batch(prompts, 0, "cpu")
    torch.manual_seed(7)
    with torch.inference_mode():
        replies = decoding.decode(lively, ids, mask, pos, 12, [], decoding.Sampler(1.0, 1.0, 1))  # top-1 = greedy
        greedy = decoding.decode(lively, ids, mask, pos, 12, [])
    assert replies == greedy
    assert decoding.Sampler.for_model(lively, 0.7, 0.9).top_k == decoding.DEFAULT_TOP_K


def test_sampling_config_fields_beyond_the_sampler_use_generate(tiny, monkeypatch):
    model, _ = tiny
    monkeypatch.setattr(model.generation_config, "typical_p", 0.5)
    assert decoding.plain_decoding_supported(model) and not decoding.plain_decoding_supported(model, sample=True)


def test_a_cache_the_loop_cannot_buffer_is_left_as_given(lively):
    from transformers.cache_utils import DynamicLayer

    class Quantised(DynamicLayer):  # stands for any layer type the loop does not know
        pass

    ids, mask, pos = inference._left_batch([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]], 0, "cpu")
    with torch.inference_mode():
        out = lively(input_ids=ids[:, :3], attention_mask=mask[:, :3], use_cache=True)
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        cache.layers[0].__class__ = Quantised
        assert decoding.decode(lively, ids, mask, pos, 4, [], cache=cache) is None
    assert cache.get_seq_length() == 3  # not extended by a forward the loop then abandons
