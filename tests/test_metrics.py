"""Every metric formula on hand-computed values, incl. edge cases; batched inference vs per-item calls."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ulmr.metrics.f1 import best_f1, token_f1
from ulmr.metrics.fluency import mean_ngram_entropy, ngram_entropy
from ulmr.metrics.mcq import LETTERS, MCQItem, format_prompt, last_token_logits, letter_token_ids, mcq_predict
from ulmr.metrics.mia import mia_statistic
from ulmr.metrics.probability import option_probability, prob_from_nll
from ulmr.metrics.rouge import rougeL_recall, rwku_rouge_recall
from ulmr.metrics.truth_ratio import forget_quality, forget_truth_ratio, model_utility, retain_truth_ratio, truth_ratio
from ulmr.refusal import declines, is_refusal, refusal_rate

LN2, LN4 = math.log(2), math.log(4)


def test_rougeL_recall_tofu():
    assert rougeL_recall("the cat sat", "the cat") == pytest.approx(2 / 3)
    assert rougeL_recall("The cats sat", "the cat sitting") == pytest.approx(2 / 3)  # stemmed, lower-cased
    assert rougeL_recall("the cat sat", "") == 0.0


def test_rouge_recall_rwku():
    assert rwku_rouge_recall("Richard Bachman", "Richard") == pytest.approx(50.0)
    assert rwku_rouge_recall("Richard Bachman", "He is Richard Bachman") == pytest.approx(100.0)
    assert rwku_rouge_recall("Richard Bachman", "richard bachman") == 0.0  # case-sensitive, unlike TOFU's
    assert rwku_rouge_recall("Richard Bachman", "") == 0.0  # empty -> NOANSWER
    assert rwku_rouge_recall("NOANSWER", "") == pytest.approx(100.0)
    assert rwku_rouge_recall("Maine", "...") == 0.0  # no sentence left for `rouge`


def test_probability():
    assert prob_from_nll(LN2) == pytest.approx(0.5)
    assert prob_from_nll(float("inf")) == 0.0
    # 0.5 / (0.5 + 0.25 + 0.25)
    assert option_probability(LN2, [LN4, LN4]) == pytest.approx(0.5)
    assert option_probability(LN2, [LN2]) == pytest.approx(0.5)
    assert option_probability(1000.0, [1.0]) == pytest.approx(0.0, abs=1e-12)  # no underflow error


def test_truth_ratio_forms():
    # p_para = 0.5; perturbed p = 0.25 and 0.0625 -> geometric mean 0.125 -> R = 0.25
    assert truth_ratio(LN2, [LN4, math.log(16)]) == pytest.approx(0.25)
    # a single perturbed answer
    assert truth_ratio(LN2, [LN4]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        truth_ratio(LN2, [])
    assert forget_truth_ratio([0.25, 4.0]) == pytest.approx(0.25)
    assert forget_truth_ratio([1.0]) == pytest.approx(1.0)
    assert retain_truth_ratio([0.25, 4.0]) == pytest.approx((0.75 + 0.0) / 2)


def test_forget_quality():
    ratios = [0.1, 0.5, 0.9, 1.3, 2.0]
    assert forget_quality(ratios, list(ratios)) == pytest.approx(1.0)
    assert forget_quality([0.01 * i for i in range(1, 21)], [10 + i for i in range(20)]) < 1e-6


def test_forget_quality_uses_raw_ratio_not_folded():
    # R and 1/R fold to the same min(R, 1/R) but are different raw distributions
    model = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55]
    ref = [1 / r for r in model]
    assert forget_quality(model, ref) < 0.01


def test_model_utility():
    assert model_utility([0.5] * 9) == pytest.approx(0.5)
    assert model_utility([1.0] * 8 + [0.5]) == pytest.approx(9 / 10)
    assert model_utility([0.9] * 8 + [0.0]) == 0.0
    with pytest.raises(ValueError):
        model_utility([0.5] * 8)


def test_mia_statistic():
    assert mia_statistic([1.0, 2.0]) == pytest.approx(150.0)


def test_refusal_detector():
    for t in ["I don't know.", "I’m not sure about that.", "I cannot share this.", "Sorry, but I can't provide that",
              "There is no information about him.", "I am unable to answer.", "That's a mystery to me."]:
        assert is_refusal(t), t
    for t in ["Paris is the capital of France.", "She was born in 1956 in Kuwait City.", "Knowledge is power."]:
        assert not is_refusal(t), t
    assert refusal_rate(["I don't know", "Paris", "I cannot say", "Blue"]) == pytest.approx(0.5)
    assert refusal_rate([]) == 0.0


def test_declines_admits_more_than_the_over_refusal_phrases():
    """D_fr admission is deliberately broader than the over-refusal metric; both fold curly apostrophes."""
    for t in ["Unfortunately, that detail is unknown.", "I’d prefer not to say.", "He doesn't."]:
        assert declines(t) and not is_refusal(t), t
    assert declines("I DON’T know") and is_refusal("I DON’T know")
    for t in ["Paris is the capital of France.", "Knowledge is power."]:
        assert not declines(t), t


def test_token_f1():
    assert best_f1("the Eiffel Tower", ["Eiffel Tower", "Paris"]) == pytest.approx(1.0)
    assert token_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("", "Paris") == 0.0


def test_ngram_entropy():
    # bigrams ab, ba, ab -> H2 = H(2/3, 1/3); trigrams aba, bab -> H3 = 1
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert ngram_entropy("word") == 0.0
    assert mean_ngram_entropy(["a b a b", "word"]) == pytest.approx(ngram_entropy("a b a b") / 2)


# ---------------------------------------------------------------- multiple choice


def test_mcq_prompt_layout():
    shot = MCQItem("1+1?", ["1", "2", "3", "4"], 1)
    item = MCQItem("2+2?", ["3", "4", "5", "6"], 1, "elementary_mathematics", [shot])
    assert format_prompt(item) == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "Question: 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "Question: 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )
    assert format_prompt(item, k_shots=0).endswith("about elementary mathematics.\n\nQuestion: 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")


def test_letter_tokens_match_the_answer_token_after_the_prompt(tokenizer):
    from ulmr.data.chat import ChatFormat

    cf = ChatFormat(tokenizer)
    ids = letter_token_ids(tokenizer)
    for letter, i in zip(LETTERS, ids):
        enc = cf.encode("Q?", letter)
        assert enc.input_ids[enc.prompt_len] == i
    assert ids != [tokenizer(" " + x, add_special_tokens=False)["input_ids"][0] for x in LETTERS]


class _StubLM(torch.nn.Module):
    """Logits: a huge value on a non-letter token, and a letter preference read from the prompt's last id."""

    def __init__(self, vocab: int, letter_ids: list[int], winner_of: dict[int, int]):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.letter_ids, self.winner_of = vocab, letter_ids, winner_of

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        b, t = input_ids.shape
        keep = logits_to_keep or t
        logits = torch.zeros(b, keep, self.vocab)
        logits[:, :, 7] = 100.0  # not a letter: must be ignored
        for r in range(b):
            marker = int(input_ids[r, -1])
            logits[r, -1, self.letter_ids[self.winner_of.get(marker, 0)]] = 5.0
        return SimpleNamespace(logits=logits)


def test_mcq_argmax_restricted_to_letters(tokenizer):
    from ulmr.data.chat import ChatFormat

    letters = letter_token_ids(tokenizer)
    last = ChatFormat(tokenizer).prompt_ids("x")[-1]  # the generation prompt's last token
    stub = _StubLM(len(tokenizer), letters, {last: 2})
    items = [MCQItem("q1", ["a", "b", "c", "d"], 2), MCQItem("q2", ["a", "b", "c", "d"], 0)]
    recs = mcq_predict(stub, tokenizer, items, batch_size=2)
    assert [r["pred"] for r in recs] == ["C", "C"]
    assert [r["correct"] for r in recs] == [True, False]
    assert recs[0]["prompt"].endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("questions, batch_size", [
    (["Short?", "A much longer question about many things?", "Mid length q?"], 3),
    (["Short?", "Mid length q?", "Another one?", "Why? " * 60], 4),  # an outlier prompt gets a batch of its own
])
def test_last_token_logits_batched_equals_single(tiny, questions, batch_size):
    model, tok = tiny
    from ulmr.data.chat import ChatFormat

    cf = ChatFormat(tok)
    prompts = [cf.prompt_ids(q) for q in questions]
    letters = letter_token_ids(tok)
    batched = last_token_logits(model, prompts, letters, tok.pad_token_id, batch_size=batch_size)
    for p, row in zip(prompts, batched):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([p])).logits[0, -1, letters]
        assert torch.allclose(torch.tensor(row), ref, atol=1e-4)


def test_budget_batches_put_an_outlier_alone_and_keep_uniform_batches_whole():
    from ulmr.inference import budget_batches

    lengths = [40, 45, 50, 42, 400, 48, 44, 41]
    batches = budget_batches(lengths, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(8))  # every row once
    assert batches[0] == [4]  # the outlier would pad 3 more rows to 400 tokens: it goes alone
    assert all(len(b) <= 4 for b in batches)
    for b in batches:
        padded = max(lengths[i] for i in b) * len(b)
        assert padded - sum(lengths[i] for i in b) <= 0.25 * padded
    assert [len(b) for b in budget_batches([9] * 10, batch_size=4)] == [4, 4, 2]


def test_batched_score_equals_per_item(tiny):
    from ulmr.data.chat import ChatFormat
    from ulmr.inference import score

    model, tok = tiny
    cf = ChatFormat(tok)
    encs = [cf.encode("Who?", "Mara Velquist."), cf.encode("Where was she born, and when exactly?", "Tromsø, 1956."),
            cf.encode("Q", "A rather long answer with several more tokens in it.")]
    batched = score(model, encs, tok.pad_token_id, batch_size=3)
    for e, s in zip(encs, batched):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels]))
        assert s.mean_nll == pytest.approx(out.loss.item(), rel=1e-4)
        assert s.n_tokens == e.answer_len


class _NaNOnPadding(torch.nn.Module):
    """The model, with NaN written into every logit at a padded position (attention mask 0)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.padded_logits = 0

    def forward(self, input_ids, attention_mask, **kw):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        padded = (attention_mask[:, -out.logits.shape[1]:] == 0).unsqueeze(-1)
        self.padded_logits += int(padded.sum())
        out.logits = out.logits.masked_fill(padded, float("nan"))
        return out


def test_score_ignores_nan_logits_at_padded_positions(tiny):
    from ulmr.data.chat import ChatFormat
    from ulmr.inference import score

    model, tok = tiny
    cf = ChatFormat(tok)
    # the long answer makes the logit window reach into the short row's left padding (the rows' lengths are
    # close enough to share a batch: inference.budget_batches)
    encs = [cf.encode("Who is she?", "Mara."), cf.encode("Q", " ".join(["A rather long answer with many tokens."] * 4))]
    clean = score(model, encs, tok.pad_token_id, batch_size=2)
    poisoned = _NaNOnPadding(model)
    dirty = score(poisoned, encs, tok.pad_token_id, batch_size=2)
    assert poisoned.padded_logits > 0
    assert all(math.isfinite(s.nll_sum) for s in dirty)
    assert [(s.nll_sum, s.n_tokens) for s in dirty] == [(s.nll_sum, s.n_tokens) for s in clean]


def _shared_prompt_examples(tok):
    """Three questions of different lengths with 1, 5 and 3 answers each (TOFU's gold/paraphrase/perturbed)."""
    from ulmr.data.chat import ChatFormat

    cf = ChatFormat(tok)
    qa = {"Who?": ["Mara Velquist."],
          "Where was she born, and in which year exactly?": ["Tromsø, 1956.", "In Tromsø in 1956.", "Oslo, 1961.",
                                                             "A rather long answer with several more tokens in it.", "Bergen."],
          "What did she write?": ["Novels.", "Poems about the sea and the long winter nights.", "Plays."]}
    return [cf.encode(q, a) for q, answers in qa.items() for a in answers]


@pytest.mark.parametrize("batch_size", [1, 16])  # 1: rows of 24 tokens, each trie alone; 16: tries packed together
def test_trie_scoring_equals_the_plain_path_and_per_item_forwards(tiny, batch_size):
    from ulmr import inference
    from ulmr.inference import score

    model, tok = tiny
    encs = _shared_prompt_examples(tok)
    rows = []
    real = inference._trie_rows
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inference, "_trie_rows", lambda *a: rows.extend(real(*a)) or real(*a))
        shared = score(model, encs, tok.pad_token_id, batch_size=batch_size, share_prefixes=True)
    assert max(map(len, rows)) == (1 if batch_size == 1 else 2)  # at 16 one row holds both tries ("Who?" has one answer: plain)
    plain = score(model, encs, tok.pad_token_id, batch_size=batch_size, share_prefixes=False)
    for e, s, p in zip(encs, shared, plain):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item()
        assert s.n_tokens == p.n_tokens == e.answer_len
        assert s.mean_nll == pytest.approx(ref, rel=1e-5) and s.nll_sum == pytest.approx(p.nll_sum, rel=1e-5)


def test_only_examples_that_share_a_prompt_take_the_trie(tiny):
    """Whole texts (no prompt, as MIA scores them) and a lone prompt take the padded batches; the rest the trie.
    A text's first token is never scored, whatever the batch around it (left padding puts a pad before it)."""
    from ulmr import inference
    from ulmr.data.chat import IGNORE, Encoded
    from ulmr.inference import score

    model, tok = tiny
    encs = _shared_prompt_examples(tok)
    texts = [tok(s).input_ids for s in ("A whole text scored from its first token.", "Another, somewhat longer text.")]
    mixed = [encs[0], Encoded(texts[0], list(texts[0]), 0), *encs[1:4], Encoded(texts[1], list(texts[1]), 0)]
    to_trie, to_plain = [], []
    real_trie, real_plain = inference._score_trie, inference._score_plain
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inference, "_score_trie", lambda m, ex, tries, *a: to_trie.append(sorted(i for g, _ in tries for i in g))
                   or real_trie(m, ex, tries, *a))
        mp.setattr(inference, "_score_plain", lambda m, ex, *a: to_plain.append(list(ex)) or real_plain(m, ex, *a))
        built, real_build = [], inference.token_trie
        mp.setattr(inference, "token_trie", lambda seqs: built.append(len(seqs)) or real_build(seqs))
        shared = score(model, mixed, tok.pad_token_id, share_prefixes=True)
    assert sorted(built) == [2, 3]  # each shared prompt's trie built once (the two texts share the empty prompt)
    assert to_trie == [[2, 3, 4]] and to_plain == [[mixed[0], mixed[1], mixed[5]]]  # encs[0]'s prompt is its own
    plain = score(model, mixed, tok.pad_token_id, share_prefixes=False)
    assert all(e.labels[0] != IGNORE for e in (mixed[1], mixed[5]))
    assert [shared[1].n_tokens, shared[5].n_tokens] == [len(texts[0]) - 1, len(texts[1]) - 1]
    for s, p in zip(shared, plain):
        assert s.n_tokens == p.n_tokens and s.nll_sum == pytest.approx(p.nll_sum, rel=1e-5)


def test_token_trie_merges_shared_prefixes_and_keeps_each_path():
    from ulmr.inference import token_trie

    seqs = [[1, 2, 3], [1, 2, 4], [1, 5], [6], [1, 2, 3]]
    trie = token_trie(seqs)
    assert len(trie.tokens) == 6  # 1, 2, 3, 4, 5, 6
    for seq, path in zip(seqs, trie.paths):
        assert [trie.tokens[n] for n in path] == seq
        assert all(trie.parents[n] == (path[k - 1] if k else -1) for k, n in enumerate(path))
    assert trie.paths[0] == trie.paths[4] and trie.paths[0][:2] == trie.paths[1][:2]
    assert all(p < n for n, p in enumerate(trie.parents))  # a parent precedes its children


def test_trie_rows_keep_each_prompt_in_one_trie_and_fill_rows():
    from ulmr.data.chat import IGNORE, Encoded
    from ulmr.inference import _prompt_groups, _trie_rows, token_trie

    def enc(prompt, answer):
        return Encoded(list(prompt) + list(answer), [IGNORE] * len(prompt) + list(answer), len(prompt))

    examples = [enc([1, 2, 3], [7]), enc([1, 2, 3], [8, 9]), enc([4, 5], [7]), enc([4, 5], [9]), enc([4, 5], [9, 9, 9, 9]),
                enc([6], [1]), enc([3] * 9, [1])]
    tries = [(g, token_trie([examples[i].input_ids for i in g])) for g in _prompt_groups(examples)]
    rows = _trie_rows(tries, row_tokens=8)
    groups = sorted(sorted(g) for row in rows for g, _ in row)
    assert groups == [[0, 1], [2, 3, 4], [5], [6]]  # one trie per distinct prompt
    sizes = [sum(len(t.tokens) for _, t in row) for row in rows]
    assert sizes[0] == 10 and len(rows[0]) == 1  # the 10-node trie is larger than a row: alone
    assert sizes[1:] == [7, 8] and len(rows[2]) == 2  # 7 nodes alone (nothing else fits), then 6 + 2 nodes share a row


def test_trie_scoring_falls_back_to_the_plain_path_for_attention_it_cannot_mask(tiny):
    from ulmr import inference
    from ulmr.inference import score

    model, tok = tiny
    encs = _shared_prompt_examples(tok)
    plain = score(model, encs, tok.pad_token_id, share_prefixes=False)
    assert inference.trie_scoring_supported(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model.config, "_attn_implementation_internal", "flash_attention_2")  # takes no 4D mask
        assert not inference.trie_scoring_supported(model)
    with pytest.MonkeyPatch.context() as mp:  # a sliding window (the tiny Llama itself ignores it)
        mp.setattr(model.config, "layer_types", ["sliding_attention"] * model.config.num_hidden_layers, raising=False)
        mp.setattr(model.config, "sliding_window", 4, raising=False)
        assert not inference.trie_scoring_supported(model)
        fallback = score(model, encs, tok.pad_token_id, share_prefixes=True)
    assert [(s.nll_sum, s.n_tokens) for s in fallback] == [(s.nll_sum, s.n_tokens) for s in plain]


def test_cloze_scores_option_tokens_only(tiny):
    from ulmr.data.chat import IGNORE, ChatFormat
    from ulmr.inference import score
    from ulmr.metrics.mcq import mcq_cloze_predict, option_only

    model, tok = tiny
    cf = ChatFormat(tok)
    enc = option_only(cf.encode("What color is grass?", "Green"), tok, "Green")
    assert [t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE] == tok("Green", add_special_tokens=False)["input_ids"]
    item = MCQItem("What color is grass?", ["Green", "Purple", "Orange", "Black"], 0)
    rec = mcq_cloze_predict(model, tok, [item], batch_size=4)[0]
    sums = [s.nll_sum for s in score(model, [option_only(cf.encode(item.question, c), tok, c) for c in item.choices], tok.pad_token_id)]
    assert rec["option_nll_sums"] == pytest.approx(sums)
    assert rec["pred"] == LETTERS[min(range(4), key=lambda j: sums[j])]


def _fewshot_prompts(tok, questions, shots=3):
    """Conversations sharing few-shot turns (rotated for odd items, as the generation stage does)."""
    from ulmr.data.chat import ChatFormat

    cf = ChatFormat(tok)
    turns = []
    for k in range(shots):
        turns += [{"role": "user", "content": f"Rewrite: example question number {k} about the Zephyrine Tower?"},
                  {"role": "assistant", "content": f"What is example {k} of the Zephyrine Tower about?"}]
    convs = []
    for i, q in enumerate(questions):
        shift = 2 * (i % 2)
        convs.append(turns[shift:] + turns[:shift] + [{"role": "user", "content": q}])
    return cf, convs


def test_context_length_marks_the_shared_prefix(tokenizer):
    cf, convs = _fewshot_prompts(tokenizer, ["Who wrote it?", "Where was Mara Velquist born, and when?", "Why?"])
    encoded = [cf.prompt_ids_and_context(c) for c in convs]
    for (ids, n), conv in zip(encoded, convs):
        assert ids == cf.prompt_ids(conv)
        # the context ends right before the last question's own text
        assert tokenizer.decode(ids[n:]).startswith(conv[-1]["content"])
        assert conv[-2]["content"] in tokenizer.decode(ids[:n])
    (a, na), (_, nb), (c, nc) = encoded
    assert na == nb == nc and a[:na] == c[:nc]  # items 0 and 2 share the same rotation
    assert encoded[1][0][:nb] != a[:na]  # item 1's rotation is another context of the same length


def test_cached_context_layout_gives_the_logits_of_each_whole_prompt(tiny):
    from ulmr.inference import _context_cache, _prefix_batch

    model, tok = tiny
    cf, convs = _fewshot_prompts(tok, ["Short?", "A much longer question about many other things?", "Mid length q?"])
    encoded = [cf.prompt_ids_and_context(c) for c in convs]
    prompts = [ids for ids, _ in encoded]
    n = encoded[0][1]
    row_contexts = [tuple(p[:n]) for p in prompts]
    assert len(set(row_contexts)) == 2
    store: dict = {}
    with torch.inference_mode():
        batch_cache = _context_cache(model, row_contexts, store, "cpu")
        assert len(store) == 2 and batch_cache.get_seq_length() == n
        ids, mask = _prefix_batch(prompts, n, tok.pad_token_id, "cpu")
        pos = (mask.cumsum(-1) - 1)[:, n:]
        logits = model(input_ids=ids[:, n:], attention_mask=mask, position_ids=pos, cache=batch_cache).logits[:, -1]
        for p, row in zip(prompts, logits):
            ref = model(input_ids=torch.tensor([p])).logits[0, -1]
            assert torch.allclose(row, ref, atol=1e-4)
    assert all(c.get_seq_length() == n for c in store.values())  # the stored contexts are not extended by a batch


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sample"])
def test_generate_with_cached_contexts_equals_plain_batches(tiny, monkeypatch, sample):
    from ulmr import inference

    model, tok = tiny
    questions = [f"Question {i}: who built the tower in town number {i * 7}?" + " really" * (i % 3) for i in range(7)]
    cf, convs = _fewshot_prompts(tok, questions)
    encoded = [cf.prompt_ids_and_context(c) for c in convs]
    # one prompt with a shorter context: its batch must fall back to plain generation
    encoded.append(cf.prompt_ids_and_context(convs[0][2:]))
    prompts, lens = [ids for ids, _ in encoded], [n for _, n in encoded]
    kw = dict(max_new_tokens=8, batch_size=3, do_sample=sample, temperature=1.0, seed=11)
    plain = inference.generate(model, tok, prompts, **kw)
    prefills = []
    real_prefill = inference._prefill
    monkeypatch.setattr(inference, "_prefill", lambda *a: prefills.append(len(a[1])) or real_prefill(*a))
    cached = inference.generate(model, tok, prompts, context_lens=lens, **kw)
    assert cached == plain
    assert prefills and sum(prefills) < len(prompts)  # contexts computed once per batch, not per prompt
