"""The curves protocol: points along one run, ULMR's α points, the selection rule on the selection half,
intervals, seeds, resumption; on the tiny random model and a tiny slice of TOFU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tofu_slice
from ulmr.benchmarks import common, curves
from ulmr.benchmarks.tofu_bench import TofuBenchConfig, run_tofu_bench
from ulmr.config import TrainConfig
from ulmr.data.records import QARecord
from ulmr.eval.tofu import evaluate_tofu, metrics_from_items, per_item_values
from ulmr.selection import halves

FILES = {"forget01": 4, "retain99": 4, "forget01_perturbed": 4, "retain_perturbed": 4, "real_authors_perturbed": 2,
         "world_facts_perturbed": 2}


@pytest.fixture
def tiny_tofu(tofu_dir: Path, tmp_path: Path) -> Path:
    return tofu_slice(tofu_dir, tmp_path / "tofu", FILES)


def _cfg(model: Path, data: Path, out: Path, methods: list[str], **kw) -> TofuBenchConfig:
    return TofuBenchConfig(model=str(model), data=str(data), methods=methods, out=out, train_retain=4, eval_forget=4,
                           eval_retain=2, eval_real_authors=2, eval_world_facts=2, max_new_tokens=4, ft_epochs=1,
                           ft_batch_size=4, max_steps=4, batch_size=2, eval_batch_size=8, gen_max_new_tokens=4,
                           lr=1e-2, **kw)


def test_stage_store_reruns_a_stage_stored_under_another_recipe(tmp_path):
    store, calls = common.StageStore(tmp_path), []
    run = lambda: (calls.append(1), {"v": len(calls)})[1]  # noqa: E731
    assert store.run("s", run, "r1")["v"] == 1
    assert store.run("s", run, "r1")["v"] == 1 and len(calls) == 1  # same recipe: reused
    assert store.run("s", run, "r2")["v"] == 2 and store.get("s")["recipe"] == "r2"  # another recipe: rerun, stored
    (tmp_path / "old.json").write_text(json.dumps({"v": 0}), encoding="utf-8")  # a stage from before recipes
    assert store.run("old", run, "r3")["v"] == 0 and len(calls) == 2


def test_recipe_key_follows_method_defaults_and_training_options(monkeypatch):
    from ulmr.methods.npo import NPO

    tcfg = TrainConfig(method="npo", seed=0)
    key = common.recipe_key(tcfg)
    assert common.recipe_key(TrainConfig(method="npo", seed=0)) == key
    assert common.recipe_key(TrainConfig(method="npo", seed=0, lr=1e-3)) != key
    monkeypatch.setattr(NPO, "display_name", "renamed")  # naming a row differently changes no result
    assert common.recipe_key(tcfg) == key
    monkeypatch.setattr(NPO, "default_beta", 0.2)
    assert common.recipe_key(tcfg) != key


def test_eval_steps_halve_back_from_the_last_step():
    assert curves.eval_steps(24, 4) == [3, 6, 12, 24]
    assert curves.eval_steps(30, 4) == [4, 8, 15, 30]
    assert curves.eval_steps(50, 5) == [4, 7, 13, 25, 50]
    assert curves.eval_steps(2, 4) == [1, 2]
    assert curves.eval_steps(7, 1) == [7]


def test_tofu_metrics_from_items_equal_the_evaluation(tiny, tiny_tofu):
    """The bench recomputes every TOFU number from per-item values (for halves and intervals): on all items they
    equal evaluate_tofu's."""
    model, tok = tiny
    ref = [0.5, 1.5, 2.0, 0.9]
    res = evaluate_tofu(model, tok, str(tiny_tofu), max_new_tokens=4, batch_size=8, reference=ref)
    got = metrics_from_items({**per_item_values(res["items"]), "forget:ref_ratio": ref})
    for s in ("forget", "retain", "real_authors", "world_facts"):
        for k in ("R", "P", "TR"):
            assert got[f"{s}.{k}"] == pytest.approx(res["sets"][s][k], abs=1e-12), (s, k)
    assert got["FQ"] == pytest.approx(res["forget_quality"]) and got["MU"] == pytest.approx(res["model_utility"])


def test_step_points_do_not_change_the_training_run(tiny_model_dir, tmp_path, monkeypatch):
    """Evaluating inside the run (eval mode, generation, back to train mode) leaves the trained weights exactly
    as a run without points; each point is a stage with its cost."""
    monkeypatch.setenv("ULMR_QUIET", "1")
    forget = [QARecord(f"Who wrote book {i}?", f"Author number {i} wrote it.") for i in range(4)]
    tcfg = TrainConfig(method="ga", lr=1e-2, batch_size=2, max_steps=4, seed=0, checkpoint_steps=0, keep_checkpoints=False)
    plain, _, _ = common.train_model(tiny_model_dir, forget, None, tcfg, tmp_path / "a")
    store = common.StageStore(tmp_path / "stages")
    seen = []

    def evaluate(model, tok):
        seen.append(model.training)
        ids = tok("Who wrote book 1?", return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
        return {"metrics": {"n": float(out.shape[1])}, "per_item": {}}

    cb = curves.StepPoints(store, "ga-seed0", 2, evaluate)
    with_points, _, _ = common.train_model(tiny_model_dir, forget, None, tcfg, tmp_path / "b", callbacks=[cb])
    for (name, a), b in zip(plain.state_dict().items(), with_points.state_dict().values()):
        assert torch.equal(a, b), name
    assert seen == [False, False]  # evaluated in eval mode
    assert [r["point"]["step"] for r in cb.results] == [2, 4]
    assert [r["cost"]["steps"] for r in cb.results] == [2, 4]
    assert 0 < cb.results[0]["cost"]["train_tokens"] < cb.results[1]["cost"]["train_tokens"]
    assert sorted(p.name for p in (tmp_path / "stages" / "ga-seed0").iterdir()) == ["step2.json", "step4.json"]


def test_a_rerun_point_stops_the_run_with_the_full_runs_weights(tiny_model_dir, tmp_path, monkeypatch):
    """StepPoints(at=[2]) of a 4-step run stops after step 2 with the weights the full run had at step 2 (same
    schedule), so rerunning an early selected point at another seed does not train the rest of the run."""
    monkeypatch.setenv("ULMR_QUIET", "1")
    forget = [QARecord(f"Who wrote book {i}?", f"Author number {i} wrote it.") for i in range(4)]
    tcfg = TrainConfig(method="ga", lr=1e-2, batch_size=2, max_steps=4, seed=0, checkpoint_steps=0, keep_checkpoints=False)
    snapshots = []

    def evaluate(model, tok):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"metrics": {}, "per_item": {}}

    full = curves.StepPoints(common.StageStore(tmp_path / "full"), "ga-seed0", 2, evaluate)
    common.train_model(tiny_model_dir, forget, None, tcfg, tmp_path / "a", callbacks=[full])
    assert [r["point"]["step"] for r in full.results] == [2, 4]
    at_step2 = snapshots[0]
    rerun = curves.StepPoints(common.StageStore(tmp_path / "rerun"), "ga-seed0", 2, evaluate, at=[2])
    model, _, res = common.train_model(tiny_model_dir, forget, None, tcfg, tmp_path / "b", callbacks=[rerun])
    assert res.steps == 2 and [r["point"]["step"] for r in rerun.results] == [2]
    for name, value in model.state_dict().items():
        assert torch.equal(value, at_step2[name]), name
    assert any(not torch.equal(snapshots[1][k], v) for k, v in at_step2.items())  # the full run moved on after step 2


def test_tofu_bench_curves_select_on_one_half_and_report_the_other(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    calls = []
    real_select = curves.select
    monkeypatch.setattr(curves, "select", lambda rows, rule: (calls.append((rows, rule)), real_select(rows, rule))[1])
    cfg = _cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["ga", "ulmr", "retrain"])
    res = run_tofu_bench(cfg, show=False)

    ga, ulmr = res["methods"]["Gradient Ascent"], res["methods"]["ULMR"]
    assert [p["point"] for p in ga["curve"]] == [{"step": s} for s in (1, 2, 4)]  # halving back from step 4
    assert [p["point"] for p in ulmr["curve"]] == [{"alpha": a} for a in curves.ALPHAS]
    assert len(calls) == 2 and calls[0][1].forget == "forget.R" and calls[0][1].utility == "MU"
    # the rule saw the selection half; the table reports the report half of the chosen point
    sel_rows = calls[0][0]
    assert sel_rows == [p["selection_half"] for p in ga["curve"]]
    chosen = ga["selected"]
    assert chosen["metrics"] == ga["curve"][chosen["index"]]["report_half"]
    stage = json.loads((Path(res["stages"]) / "ga-seed0" / f"step{chosen['point']['step']}.json").read_text(encoding="utf-8"))
    sel, rep = halves(stage["per_item"], lambda g: g == "forget")
    assert len(sel["forget:R"]) == 2 and len(rep["forget:R"]) == 2 and sel["retain:R"] == stage["per_item"]["retain:R"]
    assert chosen["metrics"]["forget.R"] == pytest.approx(sum(rep["forget:R"]) / 2)
    lo, hi = chosen["ci95"]["forget.R"]
    assert lo <= chosen["metrics"]["forget.R"] <= hi
    assert ga["training"]["lr"] == 1e-2 and ga["curve"][-1]["cost"]["steps"] == 4

    md = res["paths"]["markdown"].read_text(encoding="utf-8")
    assert "selection rule: lowest forget.R among points whose utility holds (MU >= 97% of min(target" in md
    assert "95% bootstrap intervals over items (report half)" in md
    names = [r.name for r in res["rows"]]
    assert names[:2] == ["Base (target)", "Retraining"]
    assert names[2].startswith(f"Gradient Ascent (step {chosen['point']['step']})")
    assert res["paths"]["png"].stat().st_size > 0
    saved = json.loads(res["paths"]["json"].read_text(encoding="utf-8"))
    assert set(saved["methods"]["ULMR"]) >= {"curve", "selected"} and saved["rule"].startswith("lowest forget.R")
    assert saved["references"]["Retraining"]["metrics"]["FQ"] == pytest.approx(1.0)
    # every point keeps its per-item values (all items): the report-half row comes back from them
    for point in saved["methods"]["Gradient Ascent"]["curve"] + [saved["references"]["Base (target)"]]:
        again = metrics_from_items(halves(point["per_item"], lambda g: g == "forget")[1])
        want = point.get("report_half", point["metrics"])
        assert len(point["per_item"]["forget:R"]) == 4
        assert all(again[k] == pytest.approx(v, rel=1e-4, abs=1e-6) for k, v in want.items() if v is not None), (again, want)

    # resume: a lost point is evaluated again, the other points are reused (training reruns, evaluation does not)
    (Path(res["stages"]) / "ga-seed0" / "step2.json").unlink()
    (Path(res["stages"]) / "ga-seed0.json").unlink()
    again = run_tofu_bench(cfg.model_copy(update={"methods": ["ga"]}), show=False)
    t = again["timings"]
    assert not t["ga-seed0/step2"]["reused"] and t["ga-seed0/step1"]["reused"] and t["ga-seed0/step4"]["reused"]
    assert again["methods"]["Gradient Ascent"]["curve"][0]["metrics"] == ga["curve"][0]["metrics"]

    # a changed method default (its recipe) reruns the run and every point instead of reusing stale stages
    from ulmr.methods.registry import method_class

    monkeypatch.setattr(method_class("ga"), "epochs", method_class("ga").epochs + 1)
    changed = run_tofu_bench(cfg.model_copy(update={"methods": ["ga"]}), show=False)
    t = changed["timings"]
    assert not t["ga-seed0"]["reused"] and not any(t[f"ga-seed0/step{s}"]["reused"] for s in (1, 2, 4))


def test_tofu_bench_curves_rerun_the_selected_point_at_other_seeds(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    import statistics

    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    res = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["ga"], seeds=2), show=False)
    sel = res["methods"]["Gradient Ascent"]["selected"]
    step = sel["point"]["step"]
    assert sorted(p.name for p in (Path(res["stages"]) / "ga-seed1").iterdir()) == [f"step{step}.json"]
    assert sel["seeds"] == [0, 1] and sel["per_seed"][0] == sel["metrics"]
    for k in ("forget.R", "MU"):
        vals = [r[k] for r in sel["per_seed"]]
        assert sel["mean"][k] == pytest.approx(statistics.fmean(vals))
        assert sel["spread"][k] == pytest.approx(statistics.stdev(vals))
    row = res["rows"][-1]
    assert row.seeds == 2 and row.metrics == sel["mean"]
    (items,) = sel["per_seed_items"]  # seed 1's per-item values give its row
    rep = metrics_from_items(halves(items, lambda g: g == "forget")[1])
    assert rep["forget.R"] == pytest.approx(sel["per_seed"][1]["forget.R"], rel=1e-4)


def test_seed_methods_rerun_only_the_named_methods(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    """--seed-methods ga: GA's selected point runs at seed 1, NPO's does not; the note says which ran."""
    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    res = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["ga", "npo"], seeds=2, seed_methods=["ga"]), show=False)
    ga, npo = (res["methods"][n]["selected"] for n in ("Gradient Ascent", "NPO"))
    assert ga["seeds"] == [0, 1] and "seeds" not in npo
    stages = Path(res["stages"])
    assert (stages / "ga-seed1").is_dir() and not (stages / "npo-seed1").exists()
    md = Path(res["paths"]["markdown"]).read_text(encoding="utf-8")
    assert "Seeds 2 for Gradient Ascent" in md

    # --curves-from: both seed-0 curves taken from that run (GA's seed fields dropped), NPO's point rerun at seed 1
    later = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "later", ["ga", "npo"], seeds=2, seed_methods=["npo"],
                                curves_from=res["paths"]["json"]), show=False)
    assert sorted(p.name for p in Path(later["stages"]).iterdir()) == ["npo-seed1", "npo-seed1.json"]
    ga2, npo2 = (later["methods"][n]["selected"] for n in ("Gradient Ascent", "NPO"))
    assert "seeds" not in ga2 and ga2["metrics"] == ga["metrics"] and npo2["seeds"] == [0, 1] and npo2["per_seed"][0] == npo["metrics"]
    assert later["methods"]["NPO"]["curve"] == res["methods"]["NPO"]["curve"]


def test_seed_methods_must_be_benched_methods_under_the_curves_protocol(tofu_dir):
    with pytest.raises(ValueError, match="not among the benched methods"):
        TofuBenchConfig(data=str(tofu_dir), methods=["ga"], seeds=3, seed_methods=["npo"])
    with pytest.raises(ValueError, match="curves protocol only"):
        TofuBenchConfig(data=str(tofu_dir), methods=["ga"], protocol="equal-steps", seeds=3, seed_methods=["ga"])
    assert TofuBenchConfig(data=str(tofu_dir), methods=["ga", "npo"], seeds=3, seed_methods=["npo", "npo"]).seed_methods == ["npo"]


def test_rwku_metrics_from_items_equal_the_bench_metrics(tiny, rwku_dir):
    from ulmr.benchmarks.rwku_bench import flat_metrics
    from ulmr.eval.rwku import evaluate_rwku
    from ulmr.eval.rwku import metrics_from_items as rwku_metrics
    from ulmr.eval.rwku import per_item_values as rwku_items

    model, tok = tiny
    res = evaluate_rwku(model, tok, str(rwku_dir), 111, limit=3, utility="both", batch_size=8)
    direct, again = flat_metrics(res), rwku_metrics(rwku_items(res["items"]))
    assert set(direct) == set(again)
    for k, v in direct.items():
        assert again[k] == pytest.approx(v, abs=1e-9), k


def test_rwku_bench_curves_merge_targets_and_select(tiny_model_dir, rwku_dir, tmp_path, monkeypatch):
    from ulmr.benchmarks.rwku_bench import RwkuBenchConfig, is_forget_group, run_rwku_bench

    monkeypatch.setenv("ULMR_QUIET", "1")
    cfg = RwkuBenchConfig(model=str(tiny_model_dir), data=str(rwku_dir), targets=[111, 106], methods=["ga", "ulmr"], limit_train=2,
                          limit=2, utility="easy", out=tmp_path / "run", max_steps=2, curve_points=2, batch_size=2, eval_batch_size=8,
                          max_length=128, answer_tokens=4, gen_max_new_tokens=4, lr=1e-2, ulmr_alphas=[1.0, 0.5])
    res = run_rwku_bench(cfg, show=False)
    ga = res["methods"]["Gradient Ascent"]
    assert [p["point"] for p in ga["curve"]] == [{"step": 1}, {"step": 2}]
    assert [p["point"] for p in res["methods"]["ULMR"]["curve"]] == [{"alpha": 0.5}, {"alpha": 1.0}]
    stages = Path(res["stages"])
    per_target = [json.loads((stages / f"t{t}" / "ga-seed0" / "step2.json").read_text(encoding="utf-8")) for t in (111, 106)]
    last = ga["curve"][-1]
    for k in ("forget.All", "neighbor.All", "Easy"):  # a bench point is the mean over targets
        assert last["metrics"][k] == pytest.approx(sum(p["metrics"][k] for p in per_target) / 2), k
    assert res["rule"].startswith("lowest forget.All among points whose utility holds (Neighbour All >= 85% of Before")
    assert is_forget_group("t111/forget_qa") and is_forget_group("t5/mia_forget") and not is_forget_group("t111/neighbor_fb")
    assert [r.name for r in res["rows"]][0] == "Before" and "95% bootstrap intervals" in res["paths"]["markdown"].read_text(encoding="utf-8")
    assert res["paths"]["png"].stat().st_size > 0
    _check_curves_from(res, cfg, tmp_path)
    _check_joining_runs(res, cfg, tmp_path, monkeypatch)


def _check_curves_from(res, cfg, tmp_path):
    """--curves-from: the earlier run's curves are taken, not trained again; only GA's seed rerun runs; a run with
    other settings is refused before any model loads."""
    from ulmr.benchmarks.rwku_bench import RwkuBenchConfig, run_rwku_bench
    from ulmr.errors import ConfigError

    again = RwkuBenchConfig(**{**cfg.model_dump(), "out": tmp_path / "seeds", "seeds": 2, "seed_methods": ["ga"],
                               "curves_from": res["paths"]["json"]})
    res2 = run_rwku_bench(again, show=False)
    ran = {p.stem for p in Path(res2["stages"]).glob("t*/*.json")}  # the jobs stored per target
    assert "ga-seed1" in ran and not {"ga-seed0", "ulmr-seed0"} & ran, ran
    ga, ga2 = res["methods"]["Gradient Ascent"], res2["methods"]["Gradient Ascent"]
    assert ga2["curve"] == ga["curve"] and ga2["selected"]["seeds"] == [0, 1]
    assert ga2["selected"]["per_seed"][0] == ga["selected"]["metrics"] and ga2["selected"]["point"] == ga["selected"]["point"]
    assert res2["methods"]["ULMR"]["selected"] == res["methods"]["ULMR"]["selected"]  # not in --seed-methods: seed 0 only
    other = RwkuBenchConfig(**{**again.model_dump(), "limit": 3, "model": str(tmp_path / "no-such-model")})
    with pytest.raises(ConfigError, match=r"--curves-from .*results.json: run with other settings \(limit"):
        run_rwku_bench(other, show=False)


def _check_joining_runs(res, cfg, tmp_path, monkeypatch):
    """bench/combine_rwku.py: the run split into a GA-only and a ULMR-only results.json and joined again gives
    the same rows; a run with other settings is refused."""
    import runpy

    full = json.loads(res["paths"]["json"].read_text(encoding="utf-8"))
    only = lambda name: {**full, "methods": {name: full["methods"][name]}}  # noqa: E731
    (tmp_path / "run" / "results.json").write_text(json.dumps(only("ULMR")), encoding="utf-8")
    ga = tmp_path / "ga.json"
    ga.write_text(json.dumps(only("Gradient Ascent")), encoding="utf-8")
    script = str(Path(__file__).parents[1] / "bench" / "combine_rwku.py")
    monkeypatch.setattr("sys.argv", [script, str(tmp_path / "run"), str(ga), "--out", str(tmp_path / "joined")])
    runpy.run_path(script, run_name="__main__")
    joined = json.loads((tmp_path / "joined" / "results.json").read_text(encoding="utf-8"))
    assert list(joined["methods"]) == ["ULMR", "Gradient Ascent"]  # the registry's order, not the arguments'
    by_name = lambda rows: sorted(rows, key=lambda r: r["name"])  # noqa: E731
    assert joined["methods"] == full["methods"] and by_name(joined["rows"]) == by_name(full["rows"])
    ga.write_text(json.dumps({**only("Gradient Ascent"), "settings": {**full["settings"], "limit": 3}}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"run with other settings \(limit\)"):
        runpy.run_path(script, run_name="__main__")


def test_ulmr_alphas_above_one_need_allow_extrapolation(tmp_path):
    from pydantic import ValidationError

    from ulmr.benchmarks.rwku_bench import RwkuBenchConfig
    from ulmr.benchmarks.tofu_bench import stage_key

    for cls in (TofuBenchConfig, RwkuBenchConfig):
        with pytest.raises(ValidationError, match="must be <= 1 \\(got 1.5\\); pass --allow-extrapolation"):
            cls(data=str(tmp_path), ulmr_alphas=[0.5, 1.5])
        assert cls(data=str(tmp_path), ulmr_alphas=[1.5, 0.5, 1.5], allow_extrapolation=True).ulmr_alphas == [0.5, 1.5]
    default, wider = TofuBenchConfig(data=str(tmp_path)), TofuBenchConfig(data=str(tmp_path), ulmr_alphas=[0.5, 1.0])
    assert stage_key(default, tmp_path, tmp_path) != stage_key(wider, tmp_path, tmp_path)
