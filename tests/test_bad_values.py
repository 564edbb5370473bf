"""Every numeric or choice option of every command, out of range: exit 2, one error line naming the option,
no traceback, and no model loaded (issue 27, "Bad values"). In process, so the loaders can be replaced."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Flag -> an out-of-range or unknown value; shared by every command that has the flag.
BAD = {
    "--num-rewrites": "17", "--mode": "shouting", "--backend": "carrier-pigeon", "--generator-dtype": "int8",
    "--temperature": "3", "--max-new-tokens": "2000", "--gen-batch-size": "0", "--alpha": "1.5", "--epochs": "0",
    "--lr": "-1", "--retain-weight": "-1", "--answer-weight": "-0.1", "--answer-source": "gold", "--beta": "0",
    "--batch-size": "0", "--grad-accum": "0", "--max-steps": "-2", "--max-length": "8", "--seed": "-1", "--lora-r": "0",
    "--checkpoint-steps": "-1", "--anchor": "nowhere", "--method": "sgd", "--methods": "ulmr,sgd", "--steps": "0",
    "--alphas": "0,1.5", "--retain-share": "1.5", "--utility-drop": "150", "--retain-limit": "0", "--utility-limit": "0", "--select": "best",
    "--forget-split": "forget99", "--limit-forget": "0", "--limit-retain": "0", "--limit-ra": "0", "--limit-wf": "0",
    "--target": "0", "--limit": "0", "--utility": "all", "--pool": "median", "--extra": "chess",
    "--extra-max-new-tokens": "0", "--scale": "huge", "--seeds": "0", "--train-retain": "0", "--eval-forget": "0",
    "--eval-retain": "0", "--eval-real-authors": "0", "--eval-world-facts": "0", "--ft-lr": "0", "--ft-epochs": "0",
    "--ft-batch-size": "0", "--generator": "oracle", "--eval-batch-size": "0", "--threads": "-1", "--targets": "0",
    "--limit-train": "0", "--relearn-steps": "0", "--relearn-lr": "0", "--group-size": "0", "--threshold": "-1",
    "--refusal-threshold": "2", "--protocol": "fastest", "--curve-points": "0", "--ulmr-alphas": "0.5,1.5",
    "--recipe": "pastry", "--filters": "none", "--retain-loss": "l2", "--seed-methods": "sgd",
}
GENERATE = ["--num-rewrites", "--filters", "--mode", "--backend", "--generator-dtype", "--temperature", "--max-new-tokens",
            "--gen-batch-size", "--seed"]
TRAIN = ["--epochs", "--lr", "--retain-weight", "--retain-loss", "--answer-weight", "--answer-source", "--beta", "--batch-size",
         "--grad-accum", "--max-steps", "--max-length", "--seed", "--lora-r", "--checkpoint-steps", "--anchor", "--method"]
# Command -> (the command with valid required options, {flag: value} overriding BAD, flags to check).
COMMANDS: dict[str, tuple[list[str], dict[str, str], list[str]]] = {
    "unlearn": (["unlearn", "--forget", "{qa}", "--out", "{out}"], {"--alpha": "0"}, sorted(set(GENERATE + TRAIN + ["--alpha", "--recipe"]))),
    "unlearn-alpha": (["unlearn", "--forget", "{qa}", "--out", "{out}"], {}, ["--alpha"]),
    "generate": (["generate", "--forget", "{qa}", "--out", "{out}"], {}, GENERATE),
    "train": (["train", "--data", "{qa}", "--out", "{out}"], {}, TRAIN),
    "merge": (["merge", "--base", "{model}", "--finetuned", "{model}", "--out", "{out}"], {}, ["--alpha"]),
    "compare": (["compare", "--forget", "{qa}", "--out", "{out}"], {},
                ["--methods", "--steps", "--epochs", "--lr", "--alpha", "--batch-size", "--max-new-tokens", "--seed"]),
    "sweep": (["sweep", "--base", "{model}", "--finetuned", "{model}", "--out", "{out}"], {},
              ["--alphas", "--retain-share", "--utility-drop", "--retain-limit", "--utility-limit", "--select", "--max-new-tokens"]),
    "eval-tofu": (["eval", "tofu", "--model", "{model}", "--data", "{tmp}"], {"--max-new-tokens": "0"},
                  ["--forget-split", "--limit-forget", "--limit-retain", "--limit-ra", "--limit-wf", "--max-new-tokens", "--batch-size"]),
    "eval-rwku": (["eval", "rwku", "--model", "{model}", "--data", "{tmp}", "--target", "1"], {},
                  ["--target", "--limit", "--utility", "--pool", "--extra", "--extra-max-new-tokens", "--batch-size"]),
    "eval-qa": (["eval", "qa", "--model", "{model}", "--forget", "{qa}"], {}, ["--max-new-tokens", "--batch-size"]),
    "bench-tofu": (["bench", "tofu", "--data", "{tmp}", "--out", "{out}"], {"--alpha": "0"},
                   ["--forget-split", "--methods", "--scale", "--protocol", "--curve-points", "--ulmr-alphas", "--seeds", "--seed-methods", "--train-retain", "--eval-forget", "--eval-retain",
                    "--eval-real-authors", "--eval-world-facts", "--max-new-tokens", "--ft-lr", "--ft-epochs", "--ft-batch-size",
                    "--lr", "--epochs", "--batch-size", "--max-steps", "--alpha", "--answer-weight", "--retain-loss", "--anchor", "--generator",
                    "--eval-batch-size", "--threads"]),
    "bench-rwku": (["bench", "rwku", "--data", "{tmp}", "--out", "{out}"], {"--limit": "-1", "--utility": "all"},
                   ["--targets", "--methods", "--limit-train", "--limit", "--utility", "--protocol", "--curve-points", "--ulmr-alphas", "--seeds", "--seed-methods", "--lr", "--epochs",
                    "--batch-size", "--max-steps", "--alpha", "--answer-weight", "--retain-loss", "--anchor", "--eval-batch-size", "--threads"]),
    "verify": (["verify", "--model", "{model}", "--base", "{model}", "--forget", "{qa}", "--out", "{out}"], {},
               ["--max-new-tokens", "--batch-size", "--relearn-steps", "--relearn-lr", "--group-size", "--threshold",
                "--refusal-threshold", "--seed", "--threads"]),
    "demo": (["demo", "--out", "{out}"], {"--alpha": "0"}, ["--epochs", "--alpha", "--seed", "--generator-dtype"]),
}
CASES = [(name, f, {**BAD, **over}[f]) for name, (_, over, flags) in COMMANDS.items() for f in flags]
LOADER_MODULES = ["ulmr.models", "ulmr.pipeline", "ulmr.compare", "ulmr.demo", "ulmr.merge", "ulmr.sweep",
                  "ulmr.benchmarks.common", "ulmr.benchmarks.tofu_bench", "ulmr.benchmarks.rwku_bench", "ulmr.verify.run"]
LOADERS = ("load", "load_model", "load_tokenizer", "cached_model_dir", "base_weights_dir")


@pytest.fixture
def no_model_load(monkeypatch):
    """Every loader, in ulmr.models and wherever a module imported it by name, refuses to run."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the options were validated")

    modules = [importlib.import_module(name) for name in LOADER_MODULES]  # all imported before any is patched
    for mod in modules:
        for loader in LOADERS:
            if hasattr(mod, loader):
                monkeypatch.setattr(mod, loader, refuse)


def _args(template: list[str], qa: Path, tmp: Path) -> list[str]:
    model = tmp / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return [a.format(qa=qa, out=tmp / "out", model=model, tmp=tmp) for a in template]


def assert_one_error_line(code: int | None, output: str, *needles: str) -> str:
    """Exit 2, no traceback, exactly one non-empty output line: the error, containing every needle."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command,flag,value", CASES, ids=[f"{c}{f}={v}" for c, f, v in CASES])
def test_bad_value_is_one_line_before_any_model_loads(cli_output, no_model_load, qa_file, tmp_path, command, flag, value):
    args = _args(COMMANDS[command][0], qa_file, tmp_path)
    assert_one_error_line(*cli_output(*args, flag, value), flag)
    assert not (tmp_path / "out").exists()


YAML_CASES = [("unlearn", "max_new_tokens", 2000), ("unlearn", "max_tries", 25), ("generate", "max_tries", 25),
              ("generate", "max_new_tokens", 2000), ("generate", "top_p", 0), ("generate", "mode", "shouting"),
              ("unlearn", "alpha", 1.5), ("unlearn", "lr", -1), ("unlearn", "batch_size", 0), ("unlearn", "seed", -1),
              ("unlearn", "weight_decay", -1), ("unlearn", "warmup_ratio", 1), ("train", "lr", -1), ("train", "epochs", 0),
              ("train", "max_length", 8), ("train", "lora_dropout", 1), ("train", "probe_items", 0)]


@pytest.mark.parametrize("command,key,value", YAML_CASES, ids=[f"{c}-{k}={v}" for c, k, v in YAML_CASES])
def test_bad_value_in_yaml_config_is_one_line(cli_output, no_model_load, qa_file, tmp_path, command, key, value):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"{key}: {value}\n")
    data_flag = "--data" if command == "train" else "--forget"
    line = assert_one_error_line(*cli_output(command, data_flag, str(qa_file), "--out", str(tmp_path / "out"), "--config", str(cfg)))
    assert key in line or f"--{key.replace('_', '-')}" in line, line
    assert not (tmp_path / "out").exists()


def test_flag_beats_the_yaml_value_and_is_named_as_a_flag(cli_output, no_model_load, qa_file, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("max_new_tokens: 32\n")
    line = assert_one_error_line(*cli_output("generate", "--forget", str(qa_file), "--out", str(tmp_path / "out"),
                                      "--config", str(cfg), "--max-new-tokens", "2000"))
    assert line == "error: --max-new-tokens: must be <= 1024 (got 2000)"


def test_one_source_per_bound():
    """The bounds a command checks are the config's: GenerateConfig's max_new_tokens is the shared type's."""
    from ulmr.benchmarks.rwku_bench import RwkuBenchConfig
    from ulmr.config import CompareConfig, EvalOptions, GenerateConfig, NewTokens, TrainConfig
    from ulmr.verify.config import VerifyConfig

    bound = NewTokens.__metadata__[0].metadata  # [Ge(ge=1), Le(le=1024)]
    for model, field in [(GenerateConfig, "max_new_tokens"), (CompareConfig, "max_new_tokens"), (EvalOptions, "max_new_tokens"),
                         (VerifyConfig, "max_new_tokens"), (RwkuBenchConfig, "gen_max_new_tokens")]:
        assert model.model_fields[field].metadata == bound, (model, field)
    assert TrainConfig.model_fields["lr"].annotation == CompareConfig.model_fields["lr"].annotation


def test_verify_api_only_options_are_not_named_as_flags():
    from ulmr.errors import ConfigError
    from ulmr.verify.config import make_config

    with pytest.raises(ConfigError, match=r"^VerifyConfig\.quant_bits: 9 is outside 2\.\.8$"):
        make_config(quant_bits=(9,))
    with pytest.raises(ConfigError, match=r"^VerifyConfig\.attacks: unknown 'x'"):
        make_config(attacks=("x",))
    with pytest.raises(ConfigError, match=r"^--relearn-lr: must be > 0 \(got 0\)$"):
        make_config(relearn_lr=0)


def test_unknown_hub_model_offline_is_one_quick_line(qa_file, tmp_path):
    env = dict(os.environ, ULMR_QUIET="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    res = subprocess.run([sys.executable, "-m", "ulmr.cli", "eval", "qa", "--model", "nosuch-org/nosuch-model", "--forget",
                          str(qa_file), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    line = assert_one_error_line(res.returncode, res.stdout + res.stderr, "unknown model 'nosuch-org/nosuch-model'", "HF_HUB_OFFLINE")
    assert "Retrying" not in res.stderr, line


def test_unreachable_hub_is_one_line_without_retries(monkeypatch):
    """With the hub unreachable (and not offline), one look-up, no retry, one line."""
    import ulmr.models as models
    from ulmr.errors import ModelError

    calls = []

    def unreachable(*a, **k):
        calls.append(a)
        raise ConnectionError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_offline", lambda: False)
    monkeypatch.setattr(models, "model_info", unreachable)
    models.check_hub_model.cache_clear()
    with pytest.raises(ModelError, match=r"unknown model 'nosuch-org/other'.*hub cannot be reached \(Name or service not known\)"):
        models.resolve_model("nosuch-org/other")
    assert len(calls) == 1


@pytest.mark.parametrize("spec", ["bad name!", "org/repo--x"])
def test_invalid_hub_id_is_one_line(spec):
    from ulmr.errors import ModelError
    from ulmr.models import resolve_model

    with pytest.raises(ModelError, match=r"^unknown model .*nor a valid hub id"):
        resolve_model(spec)
