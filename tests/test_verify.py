"""ulmr verify on the tiny random model: quantisation, relearning, attack prompts, verdicts, end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ulmr.data.records import QARecord
from ulmr.errors import ConfigError
from ulmr.verify import ATTACKS, attack_prompt, attack_records, make_config, quantize_model, quantize_tensor, relearn, verify
from ulmr.verify.attacks import mc_options
from ulmr.verify.quantize import group_scales
from ulmr.verify.relearn import split_halves, split_indices
from ulmr.verify.scoring import (
    knowledge_passes,
    knowledge_row,
    over_refusal,
    overall,
    recovery_ratio,
    refusal_passes,
    verdicts,
)

FORGET = [
    QARecord("Who wrote the novel 'The Silent Harbor'?", "The Silent Harbor was written by Mara Velquist."),
    QARecord("Where was Mara Velquist born?", "Mara Velquist was born in Tromso, Norway."),
    QARecord("What prize did Mara Velquist win?", "She won the Nordic Crime Award in 1991."),
    QARecord("What is Mara Velquist's first novel?", "Her first novel was Grey Lanterns."),
]
RETAIN = [QARecord("What is the capital of France?", "Paris."), QARecord("How many legs has a spider?", "Eight.")]


def dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- quantisation
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("cols", [256, 300])  # 300: a padded last group
def test_quantisation_error_is_at_most_half_a_step_per_group(bits, cols):
    torch.manual_seed(0)
    w = torch.randn(6, cols)
    q = quantize_tensor(w, bits, group_size=128)
    scale = group_scales(w, bits, 128).repeat_interleave(128, dim=1)[:, :cols]
    assert torch.all((w - q).abs() <= scale / 2 + 1e-6)
    # every group lies on its grid: at most 2**bits - 1 distinct levels
    assert len(torch.unique(q[0, :128])) <= 2**bits - 1


def test_quantisation_8bit_beats_4bit_and_keeps_shape_and_dtype():
    torch.manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(16, 200).to(dtype)
        q4, q8 = quantize_tensor(w, 4, 64), quantize_tensor(w, 8, 64)
        assert q4.shape == q8.shape == w.shape and q4.dtype == q8.dtype == dtype
        assert (w.float() - q8.float()).abs().mean() < (w.float() - q4.float()).abs().mean()
    assert torch.equal(quantize_tensor(torch.zeros(2, 10), 4, 4), torch.zeros(2, 10))


def test_quantize_model_copies_and_skips_lm_head(tiny):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_model(model, bits=4, group_size=16)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the original model must stay untouched"
    qs = q.state_dict()
    assert {k: (v.shape, v.dtype) for k, v in qs.items()} == {k: (v.shape, v.dtype) for k, v in before.items()}
    assert not torch.equal(qs["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(qs["model.embed_tokens.weight"], before["model.embed_tokens.weight"])  # tied lm_head skipped


# ----------------------------------------------------------------------------- relearning
def test_split_halves_is_deterministic_and_disjoint():
    a, b = split_indices(7, seed=3)
    assert (a, b) == split_indices(7, seed=3) and len(a) == 3 and len(b) == 4 and not set(a) & set(b)
    assert sorted(a + b) == list(range(7))
    with pytest.raises(ConfigError):
        split_halves(FORGET[:1])


def test_relearning_runs_exactly_n_steps_and_leaves_the_model_alone(tiny_model_dir, tokenizer):
    from ulmr.models import load_model

    on_disk = dir_hash(tiny_model_dir)
    model = load_model(str(tiny_model_dir))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = relearn(model, tokenizer, FORGET[:2], steps=2, lr=1e-3, batch_size=1)
    assert res.steps == 2 and res.final_loss is not None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items())
    assert dir_hash(tiny_model_dir) == on_disk


# ----------------------------------------------------------------------------- attack prompts
@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_prompt_holds_the_question_and_its_marker(name):
    for i, rec in enumerate(FORGET):
        p = attack_prompt(name, FORGET, i, seed=0)
        assert rec.question in p and ATTACKS[name].marker in p
        assert "Please briefly answer the following question." in p  # RWKU's wrapper
        if name != "multiple_choice":
            assert rec.answer not in p, "only multiple choice may show the gold answer"


def test_in_context_shows_other_items_with_answers():
    p = attack_prompt("in_context", FORGET, 0)
    assert f"Question: {FORGET[1].question} Answer: {FORGET[1].answer}" in p
    assert p.rstrip().endswith(f"Question: {FORGET[0].question}")
    assert "Paris" in attack_prompt("in_context", FORGET[:1], 0)  # generic shots for a single item


def test_multiple_choice_has_the_gold_answer_in_a_seeded_order():
    for i, rec in enumerate(FORGET):
        opts = mc_options(rec, i, FORGET, seed=7)
        assert rec.answer in opts and len(opts) == 4 == len(set(opts))
        assert opts == mc_options(rec, i, FORGET, seed=7)
        assert f". {rec.answer}\n" in attack_prompt("multiple_choice", FORGET, i, seed=7)
    assert len(mc_options(FORGET[0], 0, FORGET[:1], 0)) == 4  # fillers when there are no other items
    assert any(mc_options(FORGET[0], 0, FORGET, s) != mc_options(FORGET[0], 0, FORGET, 0) for s in range(1, 6))


def test_attack_records_keep_the_gold_answers():
    recs = attack_records("role_play", FORGET)
    assert [r.answer for r in recs] == [r.answer for r in FORGET]
    assert [r.extra["source_index"] for r in recs] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- recovery and verdicts
def test_recovery_ratio_and_verdicts():
    assert recovery_ratio(0.2, 0.8) == pytest.approx(0.25)
    assert recovery_ratio(0.5, 0.9, floor=0.1) == pytest.approx(0.5)
    assert recovery_ratio(0.3, 0.0) is None and recovery_ratio(0.3, 0.1, floor=0.1) is None
    assert recovery_ratio(float("nan"), 0.5) is None
    assert knowledge_passes(0.5, 0.5) is True and knowledge_passes(0.51, 0.5) is False
    assert knowledge_passes(None, 0.5) is None
    assert refusal_passes(0.1, 0.2, 0.10) is True and refusal_passes(0.1, 0.25, 0.10) is False
    assert refusal_passes(0.5, 0.0, 0.10) is True

    s = lambda r, p=0.1: {"rougeL_recall": r, "prob": p, "n": 4}  # noqa: E731
    u = lambda r, p=0.01: s(r, p)  # noqa: E731  (the unlearned model: a tenth of the base's answer probability)
    rows = [knowledge_row("direct", "", s(0.8), u(0.1), 0.5), knowledge_row("adversarial", "a", s(0.8), u(0.2), 0.5),
            knowledge_row("adversarial", "b", s(0.8), u(0.6), 0.5), knowledge_row("paraphrase", "", s(0.0, 0.0), u(0.3), 0.5)]
    assert [r.passed for r in rows] == [True, True, False, None]
    assert rows[0].prob_recovery == pytest.approx(0.1) and rows[3].prob_recovery is None
    # a refusal style: greedy answers no longer name the facts, but their probability is intact -> fails
    refusing = knowledge_row("direct", "", s(0.8, 0.4), s(0.05, 0.38), 0.5)
    assert refusing.recovery == pytest.approx(0.0625) and refusing.prob_recovery == pytest.approx(0.95) and refusing.passed is False
    # no ROUGE-L to recover: the verdict rests on the probability
    assert knowledge_row("direct", "", s(0.0, 0.4), s(0.0, 0.1), 0.5).passed is True
    # relearning with a reference model: each measure has its own floor
    rel = knowledge_row("relearning", "", s(0.8, 0.5), s(0.5, 0.3), 0.5, floor=0.2, prob_floor=0.1)
    assert rel.recovery == pytest.approx(0.5) and rel.prob_recovery == pytest.approx(0.5) and rel.passed is True
    ref = over_refusal("anchor", {"refusal_rate": 0.0, "n": 5}, {"refusal_rate": 0.2, "n": 5}, 0.10)
    assert ref.passed is False and ref.rise == pytest.approx(0.2)
    checks = verdicts(rows, ref)
    assert checks == {"direct": True, "adversarial": False, "paraphrase": None, "over_refusal": False}
    assert overall(checks) is False and overall({"direct": True, "paraphrase": None}) is True
    assert overall({"direct": None, "over_refusal": True}) is None  # the base knows nothing: inconclusive


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="relearn-steps"):
        make_config(relearn_steps=0)
    # attacks and quant_bits are not `ulmr verify` flags: messages name the VerifyConfig field, not a flag
    with pytest.raises(ConfigError, match=r"^VerifyConfig\.attacks: unknown 'nope'"):
        make_config(attacks=("nope",))
    with pytest.raises(ConfigError, match=r"^VerifyConfig\.quant_bits: 16 is outside 2\.\.8"):
        make_config(quant_bits=(16,))


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def unlearned_dir(tiny_model_dir, tmp_path) -> Path:
    """A perturbed copy of the tiny model saved as 'U', with a run's probe.jsonl in its records beside it (U.records)."""
    from ulmr.models import load

    model, tok = load(str(tiny_model_dir))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = tmp_path / "U"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    probes = [{"question": f"Could you tell me: {r.question}", "answer": r.answer, "source_index": i, "variant": "probe"}
              for i, r in enumerate(FORGET)]
    records = out.with_name("U.records")
    records.mkdir()
    (records / "probe.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probes), encoding="utf-8")
    return out


def test_verify_end_to_end_on_the_tiny_model(unlearned_dir, tiny_model_dir, tmp_path):
    on_disk = dir_hash(unlearned_dir)
    out = tmp_path / "report"
    summary = verify(unlearned_dir, str(tiny_model_dir), FORGET, retain=RETAIN, out=out, show=False,
                     max_new_tokens=4, batch_size=8, relearn_steps=1, relearn_lr=1e-3, group_size=16, quant_bits=(4,))
    assert dir_hash(unlearned_dir) == on_disk, "U on disk must not change"
    for name in ("verify.json", "verify.md", "verify.png", "verify_items.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    data = json.loads((out / "verify.json").read_text())
    assert data["passed"] == summary["passed"]
    checks = [r["check"] for r in data["rows"]]
    assert checks[:2] == ["direct", "paraphrase"] and checks.count("adversarial") == len(ATTACKS)
    assert checks[-2:] == ["relearning", "quantisation"]
    assert set(data["checks"]) == {"direct", "paraphrase", "adversarial", "relearning", "quantisation", "over_refusal"}
    rel = next(r for r in data["rows"] if r["check"] == "relearning")
    assert rel["extra"]["steps_run"] == {"base": 1, "unlearned": 1} and rel["n"] == 2
    assert data["sources"]["paraphrase"] == str(unlearned_dir.with_name("U.records") / "probe.jsonl")
    assert data["over_refusal"]["n"] == len(RETAIN)
    md = (out / "verify.md").read_text()
    assert "| over-refusal |" in md and "prefix_injection" in md and "1 optimizer steps" in md
    assert (out / "verify.png").read_bytes()[:4] == b"\x89PNG"


def test_generated_paraphrases_are_cached(tiny, tiny_model_dir, tmp_path, monkeypatch):
    from ulmr.verify import paraphrase

    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    model, tok = tiny
    recs, src = paraphrase.held_out_paraphrases(FORGET[:2], None, str(tmp_path / "no-such-model"), str(tiny_model_dir),
                                                model, tok, max_new_tokens=4)
    assert len(recs) == 2 and [r.answer for r in recs] == [r.answer for r in FORGET[:2]]
    assert all(r.question != f.question for r, f in zip(recs, FORGET)) and "cache" in src
    calls = []
    monkeypatch.setattr(paraphrase, "generate_paraphrases", lambda *a, **k: calls.append(1))
    again, _ = paraphrase.held_out_paraphrases(FORGET[:2], None, str(tmp_path / "no-such-model"), str(tiny_model_dir),
                                               model, tok, max_new_tokens=4)
    assert not calls and [r.question for r in again] == [r.question for r in recs]


def test_hook_verifies_the_saved_run_with_its_settings(unlearned_dir, tiny_model_dir, tmp_path):
    """``unlearn --verify``'s hook on a real run directory: the run's base, its forget and retain files read
    with its field names, its probe.jsonl (in OUT.records); the report lands in OUT.records/verify (it names forget items) and the
    model files stay as they were."""
    from ulmr.config import UnlearnConfig
    from ulmr.verify import run_verify_after_unlearn

    def qa(path: Path, recs) -> str:
        path.write_text("".join(json.dumps({"prompt": r.question, "reply": r.answer}) + "\n" for r in recs), encoding="utf-8")
        return str(path)

    cfg = UnlearnConfig(model=str(tiny_model_dir), forget=qa(tmp_path / "f.jsonl", FORGET), retain=qa(tmp_path / "r.jsonl", RETAIN),
                        question_field="prompt", answer_field="reply", out=unlearned_dir)
    model_files = dir_hash(unlearned_dir)
    summary = run_verify_after_unlearn(unlearned_dir, cfg, show=False, max_new_tokens=2, batch_size=8, relearn_steps=1,
                                       relearn_lr=1e-3, group_size=16, quant_bits=(4,), attacks=("role_play",))
    report = unlearned_dir.with_name("U.records") / "verify"
    assert not (unlearned_dir / "verify").exists()
    data = json.loads((report / "verify.json").read_text())
    assert data["passed"] == summary["passed"] and data["checks"] == summary["checks"]
    assert (data["model"], data["base"]) == (str(unlearned_dir), str(tiny_model_dir))
    assert data["forget"]["items"] == len(FORGET)
    rel = data["relearning"]
    assert sorted(rel["train_items"] + rel["measured_items"]) == sorted(r.question for r in FORGET)
    assert data["over_refusal"]["n"] == len(RETAIN)
    assert data["sources"]["paraphrase"].endswith("probe.jsonl")
    assert [r["check"] for r in data["rows"]] == ["direct", "paraphrase", "adversarial", "relearning", "quantisation"]
    assert dir_hash(unlearned_dir) == model_files


def test_cli_needs_base_without_a_run_record(tmp_path, qa_file, capsys):
    from ulmr.cli import main

    with pytest.raises(SystemExit) as e:
        main(["verify", "--model", str(tmp_path), "--forget", str(qa_file)])
    assert e.value.code == 2
    assert "--base is required" in capsys.readouterr().err
