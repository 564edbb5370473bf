"""``ulmr bench rwku`` on the tiny random model, one target, 2 probes per set, 2 training items, 1 step."""

from __future__ import annotations

import json

import pytest

from ulmr.benchmarks import common
from ulmr.benchmarks.rwku_bench import RwkuBenchConfig, flat_metrics, run_rwku_bench
from ulmr.eval.rwku import evaluate_rwku


def _cfg(model, data, out) -> RwkuBenchConfig:
    return RwkuBenchConfig(model=str(model), data=str(data), targets=[111], methods=["dpo", "kl"], limit_train=2, limit=2,
                           utility="both", out=out, max_steps=1, batch_size=2, eval_batch_size=8, max_length=128,
                          answer_tokens=4, gen_max_new_tokens=4, protocol="equal-steps")


def test_rwku_bench_outputs_before_row_and_resume(tiny, tiny_model_dir, rwku_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ULMR_QUIET", "1")
    out = tmp_path / "run"
    real_train = common.train_model
    calls: list[str] = []

    def interrupted(*a, **kw):
        calls.append(a[3].method)
        if a[3].method == "kl":
            raise KeyboardInterrupt
        return real_train(*a, **kw)

    monkeypatch.setattr(common, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_rwku_bench(_cfg(tiny_model_dir, rwku_dir, out), show=False)
    assert calls == ["dpo", "kl"]

    calls.clear()
    monkeypatch.setattr(common, "train_model", lambda *a, **kw: (calls.append(a[3].method), real_train(*a, **kw))[1])
    res = run_rwku_bench(_cfg(tiny_model_dir, rwku_dir, out), show=False)
    assert calls == ["kl"]  # 'before' and 'dpo' were reused
    assert res["timings"]["t111/before"]["reused"] and not res["timings"]["t111/kl-seed0"]["reused"]

    for p in res["paths"].values():
        assert p.exists() and p.stat().st_size > 0
    rows = {r["name"]: r for r in json.loads(res["paths"]["json"].read_text(encoding="utf-8"))["rows"]}
    assert list(rows) == ["Before", "DPO", "KL Minimization"]
    for r in rows.values():
        assert all(v is not None for v in r["metrics"].values()), r["name"]
        assert len(r["metrics"]) == 12  # 4 forget + 3 neighbour + 2 MIA + Gen, Easy, over-refusal
    md = res["paths"]["markdown"].read_text(encoding="utf-8")
    assert "| Before |" in md and " - " not in md.split("###")[1].split("\n- ")[0]

    # the Before row is exactly the evaluation of the original model with the same caps
    model, tok = tiny
    direct = flat_metrics(evaluate_rwku(model, tok, str(rwku_dir), 111, limit=2, utility="both", batch_size=8))
    for k, v in direct.items():
        assert rows["Before"]["metrics"][k] == pytest.approx(v, abs=1e-9), k

    # ULMR on the same stages: its D_fr is built from the reject questions and reported in the table notes
    ulmr_res = run_rwku_bench(_cfg(tiny_model_dir, rwku_dir, out).model_copy(update={"methods": ["ulmr"]}), show=False)
    info = ulmr_res["training"]["ulmr"][0]
    assert info["forget_items"] == info["d_fr_rows"] == 2 * 3  # 2 reject questions x (original + 2 rewrites)
    assert info["fallback_negatives"].endswith("/6") and ulmr_res["timings"]["t111/before"]["reused"]
    assert "ULMR D_fr (per run): 6 rows" in ulmr_res["paths"]["markdown"].read_text(encoding="utf-8")


def test_rwku_anchor_beside_the_retain_side_names_nothing_the_probes_name(tiny_model_dir, rwku_dir, tmp_path, monkeypatch):
    """--anchor all: GradDiff's retain side gains the anchor minus questions naming the subject or the probes' names;
    the default gives it to ULMR's recipe only."""
    from ulmr.anchor import entity_words
    from ulmr.benchmarks import rwku_bench
    from ulmr.data.rwku import CORE_PARTS, load_rwku

    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_model_dir, rwku_dir, tmp_path / "out")
    _, plain, _ = rwku_bench.method_data(cfg, "graddiff", 111, str(tiny_model_dir), tmp_path / "out")
    _, with_anchor, _ = rwku_bench.method_data(cfg.model_copy(update={"anchor": "all"}), "graddiff", 111, str(tiny_model_dir), tmp_path / "out")
    assert with_anchor[: len(plain)] == plain and len(with_anchor) > len(plain)
    probes = load_rwku(str(rwku_dir), 111, tuple(p for p in CORE_PARTS if "level" in p))
    names = {w for rows in probes.parts.values() for r in rows for w in entity_words(f"{r['query']} {r['answer']}")}
    names |= entity_words(probes.subject)
    assert not any(entity_words(r.question) & names for r in with_anchor[len(plain):])
    keys = {a: rwku_bench.stage_key(cfg.model_copy(update={"anchor": a})) for a in ("method", "none", "all")}
    assert len(set(keys.values())) == 3


def test_dfr_note_counts_equal_runs_instead_of_hiding_them():
    run = lambda rewrites: {"d_fr_rows": 96, "fallback_rewrites": rewrites, "fallback_negatives": "0/96"}  # noqa: E731
    note = common.dfr_note("ULMR", [run("1/64"), run("0/64"), None, run("0/64")])
    assert note == ("ULMR D_fr (per run): 96 rows, template fallbacks: rewrites 1/64, negatives 0/96; "
                    "96 rows, template fallbacks: rewrites 0/64, negatives 0/96 (2 runs).")
    assert common.dfr_note("GA", [None, {"steps": 3}]) is None
