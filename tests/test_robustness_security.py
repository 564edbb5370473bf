"""Security defaults through the CLI: safetensors only unless --allow-pickle, no remote code unless
asked, and the OpenAI-compatible API key never reaches logs, ``ulmr_run.json`` or any output file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers_openai_server import serve_openai
from scripts.robust import assert_one_line_error, cli_env, run_cli, write_forget

SECRET = "sk-robustness-NEVER-LOG-7d1e93"
FAST = ["--method", "ga", "--max-steps", "1", "--anchor", "none", "--batch-size", "2"]


@pytest.fixture
def pickled_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with its weights as a pickle checkpoint (pytorch_model.bin) only."""
    from safetensors.torch import load_file

    d = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, d)
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    return d


def test_pickle_checkpoint_needs_allow_pickle_and_output_is_safetensors(cli, pickled_model, qa_file, tmp_path):
    out = tmp_path / "o"
    assert_one_line_error(*cli("unlearn", "--model", str(pickled_model), "--forget", str(qa_file), "--out", str(out), *FAST),
                          "--allow-pickle")
    assert not out.exists()
    code, err = cli("unlearn", "--model", str(pickled_model), "--forget", str(qa_file), "--out", str(out), *FAST, "--allow-pickle")
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)


def test_remote_code_is_never_run_by_default(cli, tiny_model_dir, qa_file, tmp_path):
    marker = tmp_path / "remote_code_ran"
    d = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="ulmr_evil", architectures=["EvilForCausalLM"],
               auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilForCausalLM"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    code, err = cli("unlearn", "--model", str(d), "--forget", str(qa_file), "--out", str(tmp_path / "o"), *FAST)
    assert_one_line_error(code, err, str(d), "--trust-remote-code")
    assert not marker.exists(), "custom model code ran without --trust-remote-code"


class _Echo:
    """The server's generator: a fixed, valid-looking rewrite (no model needed)."""

    def chat(self, conversations, max_new_tokens, temperature, seed, top_p=1.0):
        return ["Could you tell me where Zorblat Quenn lives?"] * len(conversations)


def _files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _openai_args(url: str) -> list[str]:
    return ["--backend", "openai", "--openai-base-url", url + "/v1", "--openai-model", "tiny",
            "--api-key-env", "ULMR_TEST_KEY", "--num-rewrites", "1", "--max-new-tokens", "8"]


def test_api_key_not_in_generate_logs_or_outputs(tmp_path):
    forget = write_forget(tmp_path / "forget.jsonl", 2)
    out = tmp_path / "gen"
    # fail_first: a retried request, so the retry warning (which names the server) is logged too.
    with serve_openai(_Echo(), fail_first=1, fail_status=503) as srv:
        res = run_cli("--debug", "generate", "--forget", str(forget), "--out", str(out), *_openai_args(srv.url),
                      env=cli_env(ULMR_TEST_KEY=SECRET))
    assert res.returncode == 0, res.stderr
    assert srv.auth_headers and all(h == f"Bearer {SECRET}" for h in srv.auth_headers), "the key must be sent"
    assert "retry" in res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert (out / "d_fr.jsonl").exists() and not _files_containing(out, SECRET)


def test_api_key_not_in_run_record_logs_or_model_dir(cli, tiny_model_dir, tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("ULMR_TEST_KEY", SECRET)
    forget = write_forget(tmp_path / "forget.jsonl", 2)
    out = tmp_path / "o"
    with serve_openai(_Echo(), fail_first=1, fail_status=503) as srv, caplog.at_level(logging.DEBUG):
        code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(forget), "--out", str(out),
                        *_openai_args(srv.url), "--max-steps", "1", "--anchor", "none")
    assert code == 0, err
    assert srv.auth_headers and all(h == f"Bearer {SECRET}" for h in srv.auth_headers)
    record = json.loads((out / "ulmr_run.json").read_text())
    assert record["settings"]["api_key_env"] == "ULMR_TEST_KEY"  # the variable's name is recorded, never its value
    assert SECRET not in caplog.text + err
    assert not _files_containing(tmp_path, SECRET)
