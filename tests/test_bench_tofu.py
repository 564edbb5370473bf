"""``ulmr bench tofu`` on the tiny random model and a tiny slice of TOFU: outputs, cache reuse, resumability."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import tofu_slice
from ulmr.benchmarks import common
from ulmr.benchmarks.tofu_bench import TofuBenchConfig, run_tofu_bench
from ulmr.methods.registry import method_class

FILES = {"forget01": 2, "retain99": 4, "forget01_perturbed": 2, "retain_perturbed": 4, "real_authors_perturbed": 2,
         "world_facts_perturbed": 2}


@pytest.fixture
def tiny_tofu(tofu_dir: Path, tmp_path: Path) -> Path:
    """The first rows of each TOFU file the bench reads."""
    return tofu_slice(tofu_dir, tmp_path / "tofu", FILES)


def _cfg(model: Path, data: Path, out: Path, methods: list[str]) -> TofuBenchConfig:
    return TofuBenchConfig(model=str(model), data=str(data), methods=methods, out=out, train_retain=4,
                           eval_forget=2, eval_retain=2, eval_real_authors=2, eval_world_facts=2, max_new_tokens=4,
                           ft_epochs=1, ft_batch_size=4, max_steps=1, batch_size=2, eval_batch_size=8,
                           gen_max_new_tokens=4, protocol="equal-steps")


def _rows(path: Path) -> dict[str, dict]:
    return {r["name"]: r["metrics"] for r in json.loads(path.read_text(encoding="utf-8"))["rows"]}


def test_tofu_bench_outputs_cache_and_resume(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    common.TRAINED.clear()
    methods = ["ga", "ulmr", "retrain"]
    real_train = common.train_model
    calls: list[str] = []

    def interrupted(start, forget, retain, tcfg, work, **kw):
        calls.append(tcfg.method)
        if tcfg.method == "ulmr":
            raise KeyboardInterrupt
        return real_train(start, forget, retain, tcfg, work, **kw)

    # 1. a run interrupted at the second method: target and retain trained once, finished stages kept
    monkeypatch.setattr(common, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run1", methods), show=False)
    assert common.TRAINED == ["target", "retain"]
    stages = sorted(p.name for p in (tmp_path / "run1" / "stages").rglob("*.json"))
    assert stages == ["eval-retain.json", "eval-target.json", "ga-seed0.json"]

    # 2. the rerun resumes: only the missing method trains, nothing is retrained
    calls.clear()
    monkeypatch.setattr(common, "train_model", lambda *a, **kw: (calls.append(a[3].method), real_train(*a, **kw))[1])
    first = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run1", methods), show=False)
    assert calls == ["ulmr"]
    assert common.TRAINED == ["target", "retain"]
    assert first["timings"]["target_model"]["reused"] and first["timings"]["eval-target"]["reused"]
    paths = first["paths"]
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    md = paths["markdown"].read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0] for line in table] == ["| Base (target)", "| Retraining", "| Gradient Ascent", "| ULMR"]
    for line in table:  # 4 sets x 3 numbers + FQ + MU, none missing
        cells = [c.strip() for c in line.strip("| ").split(" | ")[1:]]
        numbers = [x for c in cells for x in c.split(" / ")]
        assert len(numbers) == 14 and "-" not in numbers, line
    with open(paths["csv"], encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 4
    a = _rows(paths["json"])
    assert a["Retraining"]["FQ"] == pytest.approx(1.0)
    dfr = first["training"]["ulmr"][0]
    assert dfr["generator"] == "base" and dfr["fallback_negatives"].endswith("/6")  # 2 forget items x (k + 1)
    assert dfr["fallback_rewrites"].endswith("/4")  # rewrite slots: 2 forget items x k
    assert "ULMR D_fr (per run): " in md
    target_dir = Path(first["models"]["target"])
    stamp = (target_dir / "model.safetensors").stat().st_mtime_ns

    # 3. a fresh output directory reuses the cached models (untouched) and gives the same numbers to 3 decimals
    second = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run2", ["ga"]), show=False)
    assert common.TRAINED == ["target", "retain"]
    assert (target_dir / "model.safetensors").stat().st_mtime_ns == stamp
    b = _rows(second["paths"]["json"])
    assert list(b) == ["Base (target)", "Retraining", "Gradient Ascent"]
    for name in b:
        for k, v in b[name].items():
            assert v == pytest.approx(a[name][k], abs=1e-3), (name, k)

    # 4. --generator target (the paper's p_θ): D_fr comes from the target model, in its own cache; a new stage key
    import ulmr.models
    from ulmr.benchmarks import tofu_bench

    real_load, loaded = ulmr.models.load, []
    spy = lambda path, *a, **kw: (loaded.append(str(path)), real_load(path, *a, **kw))[1]  # noqa: E731
    for module in (ulmr.models, tofu_bench):  # the bench loads the generator through its own name
        monkeypatch.setattr(module, "load", spy)
    # (--anchor none: the anchor's answers come from the base model whatever the generator)
    cfg = _cfg(tiny_model_dir, tiny_tofu, tmp_path / "run1", ["ulmr"]).model_copy(update={"generator": "target", "anchor": "none"})
    third = run_tofu_bench(cfg, show=False)
    assert third["training"]["ulmr"][0]["generator"] == "target"
    assert str(ulmr.models.cached_model_dir(str(tiny_model_dir))) not in loaded and str(target_dir) in loaded
    for suffix in ("", "-base"):  # the default run's (base) generations and this one's (target) are kept apart
        assert (tmp_path / "run1" / "work" / f"ulmr-generation{suffix}" / "generation_cache.jsonl").exists()
    stage_dirs = sorted(p.name.split("-")[0] for p in (tmp_path / "run1" / "stages").iterdir())
    assert len(stage_dirs) == 3 and stage_dirs.count("reference") == 1  # the target/retain evaluations are shared
    assert third["timings"]["eval-target"]["reused"]


def test_tofu_bench_seeds_report_mean_and_spread(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    """--seeds 2: one unlearning run per seed (seed passed to training), the row is their mean, the spread their std."""
    import statistics

    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    real_train, seeds = common.train_model, []
    monkeypatch.setattr(common, "train_model", lambda *a, **kw: (seeds.append(a[3].seed), real_train(*a, **kw))[1])
    cfg = _cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["ga"]).model_copy(update={"seeds": 2, "lr": 1e-2})
    res = run_tofu_bench(cfg, show=False)
    assert seeds[-2:] == [0, 1] and len(seeds) == 4  # target, retain, then one GA run per seed
    stage_dir = Path(res["stages"])
    per_seed = [json.loads((stage_dir / f"ga-seed{s}.json").read_text(encoding="utf-8")) for s in (0, 1)]
    per_seed = [r["metrics"] for r in per_seed]
    assert per_seed[0] != per_seed[1]  # different seeds, different runs: the mean below is not just one of them
    row = json.loads(res["paths"]["json"].read_text(encoding="utf-8"))["rows"][-1]
    assert row["name"] == "Gradient Ascent" and row["seeds"] == 2
    for k in ("forget.R", "forget.P", "MU"):
        vals = [m[k] for m in per_seed]
        assert row["metrics"][k] == pytest.approx(statistics.fmean(vals))
        assert row["spread"][k] == pytest.approx(statistics.stdev(vals))
    md = res["paths"]["markdown"].read_text(encoding="utf-8")
    assert "Gradient Ascent (2 seeds)" in md and "spread (sample std over seeds)" in md
    with open(res["paths"]["csv"], encoding="utf-8") as f:
        ga = [r for r in csv.DictReader(f) if r["model"] == "Gradient Ascent"][0]
    assert ga["seeds"] == "2" and "forget.P_std" in ga


@pytest.mark.parametrize("bench", ["tofu", "rwku"])
def test_bench_cli_defaults_are_the_config_defaults(bench, tmp_path, monkeypatch):
    """Flags not given take the config class's defaults (one source of truth); flags given override them."""
    from typer.testing import CliRunner

    from ulmr.benchmarks import rwku_bench, tofu_bench
    from ulmr.cli import app

    mod, cls, run = {"tofu": (tofu_bench, TofuBenchConfig, "run_tofu_bench"),
                     "rwku": (rwku_bench, rwku_bench.RwkuBenchConfig, "run_rwku_bench")}[bench]
    seen = []
    monkeypatch.setattr(mod, run, lambda cfg: (seen.append(cfg), {"paths": {"markdown": "x.md"}})[1])
    if bench == "tofu":
        monkeypatch.setattr(mod, "check_config", lambda cfg: None)
    data = str(tmp_path)
    assert CliRunner().invoke(app, ["bench", bench, "--data", data]).exit_code == 0
    assert seen[-1] == cls(data=data)
    res = CliRunner().invoke(app, ["bench", bench, "--data", data, "--alpha", "0.7", "--methods", "ga,npo", "--seeds", "2",
                                   "--protocol", "equal-steps", "--curve-points", "6"])
    assert res.exit_code == 0, res.output
    assert (seen[-1].alpha, seen[-1].methods, seen[-1].seeds) == (0.7, ["ga", "npo"], 2)
    assert (seen[-1].protocol, seen[-1].curve_points, cls(data=data).protocol) == ("equal-steps", 6, "curves")


@pytest.mark.parametrize("bench", ["tofu", "rwku"])
def test_bench_answer_weight_reaches_ulmr_only_and_the_table_states_it(bench, tmp_path):
    """--answer-weight 0 reproduces the tables measured before ULMR's answer term became the default."""
    from ulmr.benchmarks import rwku_bench, tofu_bench

    def tcfg(cfg, method):
        if bench == "tofu":
            return tofu_bench._train_config(cfg, method, 0, finetune=False)
        return rwku_bench._train_config(cfg, method, 0, 4)

    cls = TofuBenchConfig if bench == "tofu" else rwku_bench.RwkuBenchConfig
    paper = cls(data=str(tmp_path), answer_weight=0)
    assert tcfg(paper, "ulmr").answer_weight == 0 and tcfg(paper, "npo").answer_weight is None
    assert tcfg(cls(data=str(tmp_path)), "ulmr").answer_weight is None  # ULMR's own default
    g = f"answer term γ {method_class('ulmr').default_answer_weight:g}"  # ULMR's default, named in the table notes
    assert common.ulmr_term(None) == g and common.ulmr_term(0) == "no answer term (the paper's SFT)"
    kl = cls(data=str(tmp_path), retain_loss="kl")
    assert (tcfg(kl, "ulmr").retain_loss, tcfg(kl, "graddiff").retain_loss, tcfg(paper, "ulmr").retain_loss) == ("kl", None, None)
    assert common.ulmr_term(None, "kl") == f"{g}, retain term KL" and common.ulmr_term(None, "nll") == g
    if bench == "tofu":
        assert tofu_bench._train_config(paper, "ulmr", 0, finetune=True).answer_weight is None
        target, retain = tmp_path / "t", tmp_path / "r"
        assert tofu_bench.stage_key(paper, target, retain) != tofu_bench.stage_key(cls(data=str(tmp_path)), target, retain)
        assert tofu_bench.stage_key(kl, target, retain) != tofu_bench.stage_key(cls(data=str(tmp_path)), target, retain)
    else:
        assert rwku_bench.stage_key(kl) != rwku_bench.stage_key(cls(data=str(tmp_path)))


def test_paper_recipe_is_its_own_row_with_the_papers_filters(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    """'ULMR (paper recipe)' generates D_fr with the paper's filters, trains on it without retain rows and
    gets its own row beside ULMR's."""
    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    seen: dict[str, tuple[str, int]] = {}
    real_rows, real_train = common.dfr_rows, common.train_model
    filters: list[str] = []
    monkeypatch.setattr(common, "dfr_rows", lambda *a, **kw: (filters.append(kw["filters"]), real_rows(*a, **kw))[1])

    def train(start, forget, retain, tcfg, work, **kw):
        model, tok, res = real_train(start, forget, retain, tcfg, work, **kw)
        seen[tcfg.method] = (tcfg.method, res.train_tokens)
        return model, tok, res

    monkeypatch.setattr(common, "train_model", train)
    res = run_tofu_bench(_cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["ulmr", "ulmr-paper"]), show=False)
    assert filters == ["full", "paper"]
    assert {"ULMR", "ULMR (paper recipe)"} <= {r.name for r in res["rows"]}
    assert (tmp_path / "run" / "d_fr-ulmr-paper-base.jsonl").exists() and (tmp_path / "run" / "d_fr-ulmr-base.jsonl").exists()
    # one optimizer step each on the same number of D_fr rows: ULMR adds a retain row per D_fr row, the paper recipe none
    assert seen["ulmr-paper"][1] < seen["ulmr"][1]


def test_bench_anchor_adds_decontaminated_anchor_rows_to_the_retain_side(tiny_model_dir, tiny_tofu, tmp_path, monkeypatch):
    """--anchor all: methods with a retain set get the training retain rows plus anchor questions that name
    nothing the forget or evaluation sets name; the table says so; each --anchor value has its own stage key."""
    from ulmr.anchor import entity_words
    from ulmr.benchmarks import tofu_bench
    from ulmr.data.tofu import load_tofu

    monkeypatch.setenv("ULMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ULMR_QUIET", "1")
    seen: dict[str, list] = {}
    real_train = common.train_model
    monkeypatch.setattr(common, "train_model", lambda s, f, r, tcfg, w, **kw: (seen.setdefault(tcfg.method, list(r or [])), real_train(s, f, r, tcfg, w, **kw))[1])
    cfg = _cfg(tiny_model_dir, tiny_tofu, tmp_path / "run", ["graddiff", "ga"]).model_copy(update={"anchor": "all"})
    res = run_tofu_bench(cfg, show=False)
    forget, retain = tofu_bench.training_sets(cfg)
    anchor = seen["graddiff"][len(retain):]
    assert seen["graddiff"][: len(retain)] == retain and anchor
    names = {w for items in load_tofu(str(tiny_tofu), "forget01").values() for i in items for w in entity_words(f"{i.question} {i.answer}")}
    names |= {w for r in forget for w in entity_words(f"{r.question} {r.answer}")}
    assert not any(entity_words(r.question) & names for r in anchor)
    assert f"{len(anchor)} built-in anchor questions" in (tmp_path / "run" / "results.md").read_text()
    assert res["settings"]["anchor"] == "all" and seen["ga"] == retain  # GA takes no retain set: nothing added
    t, r = Path("t"), Path("r")
    keys = {a: tofu_bench.stage_key(cfg.model_copy(update={"anchor": a}), t, r) for a in ("method", "none", "all")}
    assert len(set(keys.values())) == 3
    # the default: each method's recipe (ULMR trains on the anchor beside the retain rows, GradDiff does not)
    default = cfg.model_copy(update={"anchor": "method"})
    assert common.takes_anchor(default.anchor, "ulmr") and not common.takes_anchor(default.anchor, "graddiff")
    assert not common.takes_anchor(default.anchor, "ulmr-paper") and not common.takes_anchor("none", "ulmr")
