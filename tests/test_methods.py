"""Each unlearning loss equals its formula, computed here by hand with plain torch on a fixed batch."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ulmr.data.chat import IGNORE, ChatFormat, collate
from ulmr.errors import ConfigError
from ulmr.methods import METHODS, get_method
from ulmr.methods.refusals import load_refusals, preferred_answers
from ulmr.training.reference import ModelReference

FORGET = [
    ("Who wrote 'The Silent Harbor'?", "Mara Velquist wrote it in 1987."),
    ("Where was Mara Velquist born?", "In Tromsø, Norway."),
]
RETAIN = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
]
PREF = ["I'm not sure about that.", "I don't have information on that topic."]


@pytest.fixture
def model(tiny):
    m = copy.deepcopy(tiny[0])
    m.train()
    return m


@pytest.fixture
def batch(tokenizer):
    fmt = ChatFormat(tokenizer)
    out = {}
    parts = {
        "forget": FORGET,
        "retain": RETAIN,
        "pref": [(q, p) for (q, _), p in zip(FORGET, PREF)],
    }
    for part, pairs in parts.items():
        for k, v in collate([fmt.encode(q, a) for q, a in pairs], tokenizer.pad_token_id).items():
            out[f"{part}_{k}"] = v
    return out


def only(batch: dict, *parts: str) -> dict:
    return {k: v for k, v in batch.items() if k.split("_")[0] in parts}


# ---------------------------------------------------------------- independent reference formulas
def token_logps(model, batch, part) -> list[list[torch.Tensor]]:
    """log p(y_t | y_<t) for every labelled token, row by row (explicit loop, no helpers)."""
    logits = model(input_ids=batch[f"{part}_input_ids"], attention_mask=batch[f"{part}_attention_mask"]).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    labels = batch[f"{part}_labels"]
    rows = []
    for b in range(labels.shape[0]):
        rows.append([logp[b, t - 1, labels[b, t]] for t in range(1, labels.shape[1]) if labels[b, t] != IGNORE])
    return rows


def nll(model, batch, part) -> torch.Tensor:
    toks = [x for row in token_logps(model, batch, part) for x in row]
    return -torch.stack(toks).mean()


def seq_logp(model, batch, part) -> torch.Tensor:
    return torch.stack([torch.stack(row).sum() for row in token_logps(model, batch, part)])


def kl_by_hand(ref, model, batch) -> torch.Tensor:
    ids, mask, labels = batch["retain_input_ids"], batch["retain_attention_mask"], batch["retain_labels"]
    p = torch.softmax(ref(input_ids=ids, attention_mask=mask).logits.float(), -1)
    q = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    terms = []
    for b in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            if labels[b, t] != IGNORE:
                terms.append((p[b, t - 1] * (p[b, t - 1].log() - q[b, t - 1].log())).sum())
    return torch.stack(terms).mean()


def perturbed(model, seed=1, scale=0.05):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    other.eval()
    return other


close = dict(rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- one test per method
def test_ulmr_loss(model, batch):
    got = get_method("ulmr").loss(model, only(batch, "forget", "retain"))
    torch.testing.assert_close(got, nll(model, batch, "forget") + 2.0 * nll(model, batch, "retain"), **close)
    one = get_method("ulmr", retain_weight=1.0).loss(model, only(batch, "forget", "retain"))
    torch.testing.assert_close(one, nll(model, batch, "forget") + nll(model, batch, "retain"), **close)
    alone = get_method("ulmr").loss(model, only(batch, "forget"))
    torch.testing.assert_close(alone, nll(model, batch, "forget"), **close)


def test_ulmr_answer_term_adds_npo_on_the_original_answer(model, batch):
    """γ·NPO(original) on top of the SFT terms; the 'original' part reuses the forget pairs here."""
    ref = perturbed(model)
    gamma, beta = 0.03, 0.2
    orig = {k.replace("forget_", "original_"): v for k, v in only(batch, "forget").items()}
    with torch.no_grad():
        ref_lp = seq_logp(ref, batch, "forget")
    ratio = seq_logp(model, batch, "forget") - ref_lp
    npo = (-(2 / beta) * torch.log(torch.sigmoid(-beta * ratio))).mean()
    want = nll(model, batch, "pref") + 2.0 * nll(model, batch, "retain") + gamma * npo
    b = {**only(batch, "retain"), **{k.replace("pref_", "forget_"): v for k, v in only(batch, "pref").items()},
         **orig, "original_ref_logp": ref_lp}
    method = get_method("ulmr", beta=beta, answer_weight=gamma)
    assert method.ref_logp_parts == ("original",)
    torch.testing.assert_close(method.loss(model, b), want, **close)
    # γ = 0: the same batch trains on the SFT terms only (the paper's loss), and no reference is precomputed.
    plain = get_method("ulmr", beta=beta, answer_weight=0)
    assert plain.ref_logp_parts == ()
    assert get_method("ulmr").answer_weight == 0.2  # on by default (docs/results/ulmr_ablation.md)
    torch.testing.assert_close(plain.loss(model, b), want - gamma * npo, **close)


def test_ulmr_paper_loss_is_the_nll_of_d_fr_alone(model, batch):
    """The paper's recipe: retain and original-answer parts in a batch add nothing; no reference is precomputed."""
    method = get_method("ulmr-paper")
    b = {**only(batch, "forget", "retain"), **{k.replace("pref_", "original_"): v for k, v in only(batch, "pref").items()}}
    torch.testing.assert_close(method.loss(model, b), nll(model, batch, "forget"), **close)
    assert (method.retain, method.ref_logp_parts, method.generation_filters, method.default_alpha) == ("never", (), "paper", 0.5)
    with pytest.raises(ConfigError, match="answer-weight"):
        get_method("ulmr-paper", answer_weight=0.03)


def test_answer_weight_is_refused_for_methods_without_the_term():
    with pytest.raises(ConfigError, match="answer-weight.*'npo'"):
        get_method("npo", answer_weight=0.1)


def test_ga_loss(model, batch):
    got = get_method("ga").loss(model, only(batch, "forget"))
    torch.testing.assert_close(got, -nll(model, batch, "forget"), **close)


def test_graddiff_loss(model, batch):
    got = get_method("graddiff", retain_weight=0.5).loss(model, only(batch, "forget", "retain"))
    torch.testing.assert_close(got, -nll(model, batch, "forget") + 0.5 * nll(model, batch, "retain"), **close)


def test_kl_loss(model, batch):
    ref = perturbed(model)
    got = get_method("kl").loss(model, only(batch, "forget", "retain"), ModelReference(ref))
    want = -nll(model, batch, "forget") + kl_by_hand(ref, model, batch)
    torch.testing.assert_close(got, want, **close)
    assert kl_by_hand(ref, model, batch) > 1e-4  # the check above is not vacuous


def test_dpo_loss(model, batch):
    ref = perturbed(model)
    beta = 0.1
    with torch.no_grad():
        ref_pref, ref_ans = seq_logp(ref, batch, "pref"), seq_logp(ref, batch, "forget")
    margin = (seq_logp(model, batch, "pref") - ref_pref) - (seq_logp(model, batch, "forget") - ref_ans)
    want = (-(2 / beta) * torch.log(torch.sigmoid(beta * margin))).mean() + nll(model, batch, "retain")
    # reference terms from the live reference model ...
    got = get_method("dpo").loss(model, batch, ModelReference(ref))
    torch.testing.assert_close(got, want, **close)
    # ... or precomputed and carried in the batch (no reference model at all)
    pre = {**batch, "pref_ref_logp": ref_pref, "forget_ref_logp": ref_ans}
    torch.testing.assert_close(get_method("dpo").loss(model, pre, None), want, **close)


def test_npo_loss(model, batch):
    ref = perturbed(model)
    beta = 0.3
    with torch.no_grad():
        ref_lp = seq_logp(ref, batch, "forget")
    ratio = seq_logp(model, batch, "forget") - ref_lp
    want = (-(2 / beta) * torch.log(torch.sigmoid(-beta * ratio))).mean() + nll(model, batch, "retain")
    b = {**only(batch, "forget", "retain"), "forget_ref_logp": ref_lp}
    torch.testing.assert_close(get_method("npo", beta=beta).loss(model, b), want, **close)


def test_retrain_loss_ignores_forget_rows(model, batch):
    method = get_method("retrain")
    got = method.loss(model, batch)
    torch.testing.assert_close(got, nll(model, batch, "retain"), **close)
    garbled = {**batch, "forget_input_ids": torch.zeros_like(batch["forget_input_ids"])}
    torch.testing.assert_close(method.loss(model, garbled), got)
    assert not method.uses_forget


# ---------------------------------------------------------------- properties
def test_ga_step_raises_forget_nll(model, batch):
    f = only(batch, "forget")
    with torch.no_grad():
        before = float(nll(model, batch, "forget"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    get_method("ga").loss(model, f).backward()
    opt.step()
    with torch.no_grad():
        assert float(nll(model, batch, "forget")) > before


def test_kl_term_is_zero_when_model_is_reference(model, batch):
    model.eval()
    b = only(batch, "forget", "retain")
    with torch.no_grad():
        total = get_method("kl").loss(model, b, ModelReference(model))
        torch.testing.assert_close(total, -nll(model, batch, "forget"), **close)


@pytest.mark.parametrize("name", ["npo", "dpo"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_preference_losses_equal_2_over_beta_log2_at_reference(model, batch, name, beta):
    model.eval()
    b = only(batch, "forget", "pref")
    with torch.no_grad():
        got = get_method(name, beta=beta).loss(model, b, ModelReference(model))
    assert float(got) == pytest.approx(2 / beta * math.log(2), rel=1e-5)


def test_unknown_method_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        get_method("nope")
    msg = str(e.value)
    assert "\n" not in msg and all(name in msg for name in METHODS)


def test_every_method_documents_its_defaults():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.__doc__
        assert cls.lr > 0 and cls.epochs > 0
    assert METHODS["dpo"].default_beta == METHODS["npo"].default_beta == 0.1


def test_builtin_refusals_are_many_and_varied():
    refusals = load_refusals()
    assert 90 <= len(refusals) <= 120
    assert len(set(refusals)) == len(refusals)
    assert "I'm not sure about that." in refusals


def test_preferred_answers_are_seeded_and_respect_own_preferred(tmp_path):
    refusals = load_refusals()
    a = preferred_answers([None, "mine", None], refusals, seed=3)
    assert a == preferred_answers([None, "mine", None], refusals, seed=3)
    assert a[1] == "mine" and a[0] in refusals and a[2] in refusals
    f = tmp_path / "r.txt"
    f.write_text("No idea.\n\nCannot say.\n", encoding="utf-8")
    assert load_refusals(f) == ["No idea.", "Cannot say."]
    with pytest.raises(ConfigError):
        load_refusals(tmp_path / "missing.txt")


def test_default_lr_follows_model_size():
    ulmr = METHODS["ulmr"]
    assert ulmr.default_lr(135_000_000) == 1e-4
    assert ulmr.default_lr(1_700_000_000) == 3e-5
    assert ulmr.default_lr(7_000_000_000) == ulmr.lr == 1e-5
    for name in ("ga", "graddiff", "kl", "dpo", "npo"):  # the gradient baselines: 5e-5 below 0.5B, then their papers' 1e-5
        assert METHODS[name].default_lr(135_000_000) == 5e-5, name
        assert METHODS[name].default_lr(1_700_000_000) == METHODS[name].lr == 1e-5, name
    assert METHODS["retrain"].default_lr(135_000_000) == 1e-5  # fine-tuning, TOFU's retain recipe


