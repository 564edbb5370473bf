"""The unlearning trainer on the tiny random model: every method trains, LoRA reference, resume, probe."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from transformers import TrainerCallback

import ulmr.train as train_mod
from ulmr.data.chat import ChatFormat
from ulmr.data.records import QARecord
from ulmr.errors import ConfigError
from ulmr.methods import METHODS, get_method
from ulmr.models import load_model
from ulmr.train import TrainConfig, train_unlearn
from ulmr.training.data import build_rows, match_retain_lengths, retain_pairing, retain_schedule

FORGET = [{"question": f"Who is author number {i}?", "answer": f"Author {i} is Mara Velquist, born in {1950 + i}."} for i in range(6)]
RETAIN = [{"question": f"What is fact {i}?", "answer": f"Fact {i} is that water boils at {90 + i} degrees."} for i in range(5)]


@pytest.fixture
def fresh(tiny_model_dir):
    return lambda: load_model(str(tiny_model_dir))


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=2, lr=1e-3, logging_steps=1, checkpoint_steps=0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains(method, fresh, tokenizer, tmp_path):
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_unlearn(model, tokenizer, FORGET, RETAIN, cfg(method=method, max_steps=1), tmp_path)
    assert res.steps == 1 and res.method == method and res.train_tokens > res.answer_tokens > 0
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0])
    after = res.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_default_lr_is_the_methods_size_aware_default_and_is_reported(fresh, tokenizer, tmp_path):
    model = fresh()
    res = train_unlearn(model, tokenizer, FORGET, None, cfg(method="ulmr", lr=None, max_steps=1), tmp_path)
    assert res.lr == METHODS["ulmr"].default_lr(model.num_parameters()) == 1e-4
    assert train_unlearn(fresh(), tokenizer, FORGET, None, cfg(method="ulmr", max_steps=1), tmp_path / "b").lr == 1e-3


def test_preference_reference_logps_are_precomputed_and_exact(fresh, tokenizer, tmp_path):
    # first logged loss is the loss before any update: (2/β)·log 2 when π_θ = π_ref
    for method in ("npo", "dpo"):
        res = train_unlearn(fresh(), tokenizer, FORGET, None, cfg(method=method, max_steps=1), tmp_path / method)
        first = [h["loss"] for h in res.log_history if "loss" in h][0]
        assert first == pytest.approx(20 * math.log(2), abs=1e-3)


def test_lora_reference_is_the_model_with_adapter_disabled(fresh, tokenizer, tmp_path, monkeypatch):
    from peft import PeftModel

    def no_copy(*a, **k):
        raise AssertionError("LoRA must not copy the model for its reference")

    monkeypatch.setattr(train_mod, "frozen_copy", no_copy)
    base = fresh()
    probe = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        base_logits = base(input_ids=probe).logits.clone()
    res = train_unlearn(base, tokenizer, FORGET, RETAIN, cfg(method="kl", lora=True, max_steps=2), tmp_path)
    assert isinstance(res.model, PeftModel) and res.lora
    res.model.eval()
    with torch.no_grad():
        trained = res.model(input_ids=probe).logits
        with res.model.disable_adapter():
            ref = res.model(input_ids=probe).logits
    torch.testing.assert_close(ref, base_logits)
    assert not torch.allclose(trained, base_logits)
    assert all(not p.requires_grad for n, p in res.model.named_parameters() if "lora_" not in n)


class _Interrupt(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step == 2:
            raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")


@pytest.mark.parametrize("grouped", [False, True], ids=["random-order", "group-by-length"])
def test_resume_after_interruption_equals_uninterrupted_run(grouped, fresh, tokenizer, tmp_path):
    # 6 rows / batch 2 = 3 steps per epoch: the 4 steps cross an epoch boundary; NPO exercises retain
    # pairing and the precomputed reference log-probs.
    c = cfg(method="npo", epochs=2, max_steps=4, checkpoint_steps=2, group_by_length=grouped)
    full = train_unlearn(fresh(), tokenizer, FORGET, RETAIN, c, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_unlearn(fresh(), tokenizer, FORGET, RETAIN, c, tmp_path / "cut", callbacks=[_Interrupt()])
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train_unlearn(fresh(), tokenizer, FORGET, RETAIN, c, tmp_path / "cut")
    assert resumed.steps == full.steps == 4
    want, got = full.model.state_dict(), resumed.model.state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert list((tmp_path / "cut" / "checkpoints").iterdir())[0].name == "checkpoint-4"  # save_total_limit=1


def test_eval_probe_logs_every_epoch_and_keeps_best(fresh, tokenizer, tmp_path):
    c = cfg(method="ga", epochs=2, batch_size=3, eval_probe=True, probe_items=2, keep_best_epoch=True)
    res = train_unlearn(fresh(), tokenizer, FORGET, RETAIN, c, tmp_path)
    probes = [h for h in res.log_history if "probe_forget_nll" in h]
    assert [p["epoch"] for p in probes] == [0, 1, 2]
    assert all("probe_retain_nll" in p for p in probes)
    assert probes[-1]["probe_forget_nll"] > probes[0]["probe_forget_nll"]
    assert res.best_epoch in (1, 2)


def test_rows_pairing_refusals_and_retrain(tokenizer):
    fmt = ChatFormat(tokenizer)
    forget = [QARecord(**f) for f in FORGET]
    retain = [QARecord(**r) for r in RETAIN]
    assert retain_pairing(5, 5, seed=1) == retain_pairing(5, 5, seed=1)
    assert sorted(retain_pairing(5, 5, seed=1)) == list(range(5))  # distinct while there are enough
    forget[0].preferred = "My own refusal."
    rows = build_rows(get_method("dpo"), fmt, forget, retain, seed=0, refusals=["No idea."])
    assert {"forget", "pref", "retain"} <= set(rows[0])
    text = lambda e: tokenizer.decode([t for t, l in zip(e.input_ids, e.labels) if l != -100])
    assert text(rows[0]["pref"]).startswith("My own refusal.") and text(rows[1]["pref"]).startswith("No idea.")
    only_retain = build_rows(get_method("retrain"), fmt, forget, retain, seed=0)
    assert len(only_retain) == len(retain) and all(set(r) == {"retain"} for r in only_retain)
    assert all("retain" not in r for r in build_rows(get_method("ga"), fmt, forget, retain, seed=0))
    with pytest.raises(ConfigError):
        build_rows(get_method("graddiff"), fmt, forget, None, seed=0)


def test_each_epoch_pairs_fresh_retain_rows(fresh, tokenizer, tmp_path, monkeypatch):
    """4 forget rows x 2 epochs over 8 retain items: every retain item is trained on once (one fixed
    pairing would show only 4 of them), and epoch 1 repeats none of epoch 0's."""
    retain = [{"question": f"What is fact {i}?", "answer": f"Fact {i} is {i * 7}."} for i in range(8)]
    seen: list[tuple[float, tuple[int, ...]]] = []
    original = train_mod.UnlearnTrainer.compute_loss

    def spy(self, model, inputs, *a, **kw):
        for ids, mask in zip(inputs["retain_input_ids"], inputs["retain_attention_mask"]):
            seen.append((self.state.epoch, tuple(ids[mask.bool()].tolist())))
        return original(self, model, inputs, *a, **kw)

    monkeypatch.setattr(train_mod.UnlearnTrainer, "compute_loss", spy)
    train_unlearn(fresh(), tokenizer, FORGET[:4], retain, cfg(method="graddiff", epochs=2, batch_size=2), tmp_path)
    first = {s for e, s in seen if e < 1}
    second = {s for e, s in seen if e >= 1}
    assert len(first) == len(second) == 4 and not first & second


def test_config_rejects_unknown_method_and_fields():
    with pytest.raises(ValidationError, match="unknown method 'bogus'; known: ulmr, ulmr-paper, ga"):
        TrainConfig(method="bogus")
    with pytest.raises(ValidationError, match=r"learning_rate\n  Extra inputs are not permitted"):
        TrainConfig(learning_rate=1.0)


def test_group_by_length_batches_similar_rows_and_still_sees_each_row_once(fresh, tokenizer, tmp_path, monkeypatch):
    """32 rows of 2 very different lengths: grouped batches pad far less than random ones, and an epoch
    still trains on every row exactly once."""
    forget = [{"question": f"Who is author number {i}?", "answer": f"Author {i}." if i % 2 else " ".join(["word"] * 40) + f" {i}."}
              for i in range(32)]
    seen: list[tuple[int, ...]] = []
    padding: list[int] = []
    original = train_mod.UnlearnTrainer.compute_loss

    def spy(self, model, inputs, *a, **kw):
        mask = inputs["forget_attention_mask"]
        padding.append(int((mask == 0).sum()))
        seen.extend(tuple(ids[m.bool()].tolist()) for ids, m in zip(inputs["forget_input_ids"], mask))
        return original(self, model, inputs, *a, **kw)

    monkeypatch.setattr(train_mod.UnlearnTrainer, "compute_loss", spy)
    pads = {}
    for grouped in (False, True):
        seen.clear()
        padding.clear()
        train_unlearn(fresh(), tokenizer, forget, None, cfg(method="ga", batch_size=2, group_by_length=grouped), tmp_path / str(grouped))
        assert len(seen) == len(set(seen)) == 32
        pads[grouped] = sum(padding)
    assert pads[True] < pads[False] / 4, pads


def test_length_matched_retain_pairing_keeps_each_epochs_items(tokenizer):
    """Re-pairing sorts retain rows along forget length, epoch by epoch, without changing which retain
    items an epoch trains on; the rows carry epoch 0's."""
    fmt = ChatFormat(tokenizer)
    forget = [QARecord(f"Question {i}?", " ".join(["long"] * (i * 7 % 11 + 1))) for i in range(8)]
    retain = [QARecord(f"Fact {i}?", " ".join(["word"] * (i * 5 % 13 + 1))) for i in range(12)]
    rows = build_rows(get_method("graddiff"), fmt, forget, retain, seed=0)
    schedule = retain_schedule(fmt, len(rows), retain, 2, seed=0)
    before = [sorted(tuple(x.input_ids) for x in epoch) for epoch in schedule]
    match_retain_lengths(rows, schedule)
    assert [sorted(tuple(x.input_ids) for x in epoch) for epoch in schedule] == before
    by_forget = sorted(range(8), key=lambda i: len(rows[i]["forget"].input_ids))
    for epoch in schedule:
        lengths = [len(epoch[i].input_ids) for i in by_forget]
        assert lengths == sorted(lengths)
    assert [r["retain"] for r in rows] == schedule[0]


DFR = [{"question": f["question"], "answer": "I'm sorry, I can't share that.", "original_answer": f["answer"]} for f in FORGET]


def _original_logp(model, tokenizer) -> float:
    from ulmr.data.chat import collate
    from ulmr.methods.common import part_logp

    fmt = ChatFormat(tokenizer)
    b = {f"original_{k}": v for k, v in collate([fmt.encode(d["question"], d["original_answer"]) for d in DFR],
                                                tokenizer.pad_token_id).items()}
    model.eval()
    with torch.no_grad():
        return float(part_logp(model, b, "original").sum())


def test_ulmr_answer_weight_lowers_the_original_answers(fresh, tokenizer, tmp_path):
    """Same rows, seed and steps: the run with the NPO term leaves the replaced answers less likely."""
    base = _original_logp(fresh(), tokenizer)
    plain = train_unlearn(fresh(), tokenizer, DFR, RETAIN, cfg(method="ulmr", epochs=2, answer_weight=0), tmp_path / "plain")
    npo = train_unlearn(fresh(), tokenizer, DFR, RETAIN, cfg(method="ulmr", epochs=2, answer_weight=0.5), tmp_path / "npo")
    lp_plain, lp_npo = _original_logp(plain.model, tokenizer), _original_logp(npo.model, tokenizer)
    assert lp_npo < lp_plain - 1.0 and lp_npo < base
    assert plain.loss_weights == {"beta": 0.1, "retain_weight": 2.0, "answer_weight": 0.0, "retain_loss": "nll", "answer_term": False,
                                  "answer_source": None, "answer_texts": None}
    assert npo.loss_weights["answer_weight"] == 0.5 and npo.loss_weights["answer_term"] is True
    # the random tiny model never names Velquist or a birth year, so every row falls back to the data's answer
    assert npo.loss_weights["answer_source"] == "model" and npo.loss_weights["answer_texts"] == {"model": 0, "item": 0, "data": 6}
    cached = [json.loads(line) for line in (tmp_path / "npo" / "model_answers.jsonl").read_text().splitlines()]
    assert [c["question"] for c in cached] == [d["question"] for d in DFR]


def test_original_answer_rows(tokenizer, caplog):
    fmt = ChatFormat(tokenizer)
    recs = [QARecord(d["question"], d["answer"], extra={"original_answer": d["original_answer"]}) for d in DFR]
    rows = build_rows(get_method("ulmr", answer_weight=0.1), fmt, recs, None, seed=0)
    answer = lambda e: tokenizer.decode([t for t, lab in zip(e.input_ids, e.labels) if lab != -100])
    # the term targets the key span only: "Mara Velquist", "born", "1952", not "Author 2 is", "in" or the end of turn
    kept = answer(rows[2]["original"])
    assert "Velquist" in kept and "1952" in kept and "Author" not in kept and " in " not in kept
    assert rows[2]["original"].labels[-1] == -100 and rows[2]["original"].input_ids == fmt.encode(DFR[2]["question"], DFR[2]["original_answer"]).input_ids
    assert answer(rows[2]["forget"]).startswith("I'm sorry")
    # the row's key (the generation stage writes the spans the negative avoided) decides the tokens
    recs[1].key = ["Velquist"]
    assert answer(build_rows(get_method("ulmr", answer_weight=0.1), fmt, recs, None, seed=0)[1]["original"]).strip() == "Velquist"
    # γ = 0: no part, no reference pass
    assert all("original" not in r for r in build_rows(get_method("ulmr", answer_weight=0), fmt, recs, None, seed=0))
    # a D_fr without the column (made elsewhere) trains without the term, and says so
    plain = [QARecord(d["question"], d["answer"]) for d in DFR]
    with caplog.at_level("WARNING"):
        assert all("original" not in r for r in build_rows(get_method("ulmr", answer_weight=0.1), fmt, plain, None, seed=0))
    assert "original_answer" in caplog.text
    # a column with gaps is an error naming the row and the field
    recs[3].extra = {}
    with pytest.raises(ConfigError, match="row 4: field 'original_answer'"):
        build_rows(get_method("ulmr", answer_weight=0.1), fmt, recs, None, seed=0)


def test_key_span_labels_keep_only_the_key_span_tokens(tokenizer):
    from ulmr.training.data import key_span_labels

    fmt = ChatFormat(tokenizer)
    q, a = "What is the first Harry Potter book called?", "Harry Potter and the Philosopher's Stone"
    enc = fmt.encode(q, a)
    got = key_span_labels(enc, tokenizer, q, a)
    kept = tokenizer.decode([t for t, lab in zip(got.input_ids, got.labels) if lab != -100])
    assert kept.strip() == "Philosopher's Stone" and got.input_ids == enc.input_ids
    # a given key replaces the derived span; an answer with no key span keeps every label
    assert tokenizer.decode([t for t, lab in zip(got.input_ids, key_span_labels(enc, tokenizer, q, a, ["Stone"]).labels)
                             if lab != -100]).strip() == "Stone"
    same = fmt.encode("Is the sky blue?", "the sky is blue")
    assert key_span_labels(same, tokenizer, "Is the sky blue?", "the sky is blue").labels == same.labels


def test_unlearn_config_passes_beta_and_answer_weight_to_training():
    from ulmr.config import UnlearnConfig

    def train_config(cfg: UnlearnConfig) -> TrainConfig:
        return cfg.stage(TrainConfig)

    t = train_config(UnlearnConfig(forget="f.jsonl", out="o", method="npo", beta=0.3))
    assert t.beta == 0.3 and t.answer_weight is None
    t = train_config(UnlearnConfig(forget="f.jsonl", out="o", answer_weight=0.03, beta=1.0))
    assert (t.answer_weight, t.beta) == (0.03, 1.0)
    assert get_method("ulmr", beta=t.beta, answer_weight=t.answer_weight).beta == 1.0
    assert t.answer_source == "model"
    assert train_config(UnlearnConfig(forget="f.jsonl", out="o", answer_source="data")).answer_source == "data"


def test_lora_answer_term_takes_the_base_models_own_answers(fresh, tokenizer, tmp_path, monkeypatch):
    """With LoRA the own answers come from the model with its adapter disabled (the base model)."""
    from peft.tuners.lora import LoraLayer

    from ulmr import inference

    seen = []
    real = inference.generate

    def spy(model, *a, **kw):
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        seen.append(bool(layers) and all(m.disable_adapters for m in layers))
        return real(model, *a, **kw)

    monkeypatch.setattr(inference, "generate", spy)
    res = train_unlearn(fresh(), tokenizer, DFR, RETAIN, cfg(method="ulmr", lora=True, max_steps=2, answer_weight=0.1), tmp_path)
    assert seen == [True]
    assert res.loss_weights["answer_texts"] == {"model": 0, "item": 0, "data": 6} and res.steps == 2


def test_ulmr_kl_retain_term_trains_against_a_frozen_copy(fresh, tokenizer, tmp_path, monkeypatch):
    """--retain-loss kl reaches the trainer: a frozen reference is made and its first step's retain term is 0."""
    from ulmr.config import UnlearnConfig
    from ulmr.methods import common as method_common

    t = UnlearnConfig(forget="f.jsonl", out="o", retain_loss="kl").stage(TrainConfig)
    assert t.retain_loss == "kl"
    kls: list[float] = []
    real_kl = method_common.answer_kl
    monkeypatch.setattr("ulmr.methods.ulmr.answer_kl", lambda *a: (kls.append(float(real_kl(*a).detach())), real_kl(*a))[1])
    res = train_unlearn(fresh(), tokenizer, FORGET, RETAIN, cfg(method="ulmr", retain_loss="kl", answer_weight=0, max_steps=2), tmp_path)
    assert res.steps == 2 and res.loss_weights["retain_loss"] == "kl"
    assert len(kls) == 2 and kls[0] == pytest.approx(0.0, abs=1e-6) and kls[1] > 0  # the model moves away from its copy
