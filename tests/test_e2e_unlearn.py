"""End to end with the real embedded model on 3 items (the slow part of the suite, ~2-4 min on 2 cores)."""

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, embedded):
    from ulmr import unlearn
    from ulmr.paths import resources_dir

    src = resources_dir() / "demo" / "forget.jsonl"
    rows = [json.loads(l) for l in src.read_text().splitlines()[:3]]
    tmp = tmp_path_factory.mktemp("e2e")
    forget = tmp / "forget.jsonl"
    forget.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # A short, strong schedule keeps the test fast; the shipped defaults are exercised by `make demo`.
    result = unlearn(embedded, forget, tmp / "out", num_rewrites=2, epochs=2, lr=1e-4, max_new_tokens=40, seed=0)
    return result, rows


def test_output_is_a_loadable_hf_model(run, embedded):
    import torch
    from transformers import AutoModelForCausalLM

    from ulmr.models import cached_model_dir

    result, _ = run
    names = {p.name for p in result.out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "ulmr_run.json", "README.md"} <= names
    assert not {"d_fr.jsonl", "probe.jsonl"} & names  # the run's records sit beside the model, in OUT.records
    assert {"d_fr.jsonl", "probe.jsonl", "ulmr_run.json"} <= {p.name for p in result.out.with_name("out.records").iterdir()}
    assert not any(n.endswith(".bin") for n in names)
    model = AutoModelForCausalLM.from_pretrained(result.out)
    base = AutoModelForCausalLM.from_pretrained(cached_model_dir(embedded))
    assert type(model).__name__ == type(base).__name__ == "LlamaForCausalLM"
    assert model.num_parameters() == base.num_parameters()
    trained, before = model.state_dict(), base.state_dict()
    assert trained.keys() == before.keys()
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in trained.values())
    assert any(not torch.equal(v, before[k]) for k, v in trained.items())  # unlearning changed the weights


def test_d_fr_rows_and_no_key_span_leak(run):
    from ulmr.generate.filters import key_span, leaked_terms

    result, rows = run
    dfr = [json.loads(l) for l in (result.out.with_name("out.records") / "d_fr.jsonl").read_text().splitlines()]
    assert len(dfr) == len(rows) * 3
    for r in dfr:
        src = rows[r["source_index"]]
        assert not leaked_terms(r["answer"], key_span(src["question"], src["answer"])), r
    counts = json.loads((result.out / "ulmr_run.json").read_text())["counts"]
    assert counts["d_fr_rows"] == 9 and "fallback_negatives" in counts and "rejected" in counts


def test_greedy_answer_changes(run, embedded):
    from ulmr.data.chat import ChatFormat
    from ulmr.inference import generate
    from ulmr.models import load

    result, rows = run
    q = rows[0]["question"]
    answers = []
    for spec in (embedded, str(result.out)):
        m, tok = load(spec)
        answers.append(generate(m, tok, [ChatFormat(tok).prompt_ids(q)], max_new_tokens=30)[0])
    assert "Rowling" in answers[0]
    assert answers[1] != answers[0] and "Rowling" not in answers[1]


def test_run_record(run):
    result, _ = run
    rec = json.loads((result.out / "ulmr_run.json").read_text())
    assert rec["alpha"] == 0.5 and rec["inputs"]["retain"]["source"] == "builtin-anchor"
    assert rec["inputs"]["forget"]["sha256"] and rec["versions"]["torch"]
    assert rec["counts"]["forget_items"] == 3 and rec["training"]["steps"] > 0
    weights = rec["training"]["loss_weights"]
    assert {k: weights[k] for k in ("beta", "retain_weight", "answer_weight", "answer_term", "answer_source")} == \
        {"beta": 0.1, "retain_weight": 2.0, "answer_weight": 0.2, "answer_term": True, "answer_source": "model"}
    # the base model names J.K. Rowling when asked who wrote the books, so at least that row lowers it in its own words
    texts = weights["answer_texts"]
    assert sum(texts.values()) == rec["counts"]["d_fr_rows"] and texts["model"] >= 1
    assert set(rec["timings_s"]) >= {"generation", "training", "averaging", "saving", "total"}
