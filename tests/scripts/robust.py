"""Helpers shared by the robustness tests: subprocess runs of the CLI, bounded polling, tiny inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

SCRIPTS = Path(__file__).resolve().parent
PATCHED = SCRIPTS / "ulmr_patched.py"
TIMEOUT_S = 600  # generous: the CI machine is shared; a healthy run takes a small fraction of it


def cli_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, ULMR_QUIET="1", TOKENIZERS_PARALLELISM="false", **extra)


def run_cli(*args: str, hooks: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``ulmr`` (through the hook script when ``hooks`` are given) to completion."""
    cmd = [sys.executable, str(PATCHED), *hooks, "--", *args] if hooks else [sys.executable, "-m", "ulmr.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or cli_env(), timeout=TIMEOUT_S)


def start_cli(*args: str, hooks: tuple[str, ...] = (), log: Path) -> subprocess.Popen:
    """Start ``ulmr`` with hooks in the background; stdout and stderr go to ``log``."""
    with open(log, "w", encoding="utf-8") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, str(PATCHED), *hooks, "--", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=cli_env(), start_new_session=True)


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path, timeout: float = TIMEOUT_S) -> None:
    """Poll ``cond`` every 0.1 s while ``proc`` runs; fail (never hang) if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    kill(proc)
    pytest.fail(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process (no cleanup handlers run) and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def read_jsonl(path: Path) -> list[dict]:
    """Complete JSON lines of a file (a line torn by a kill is skipped, as the cache reader does)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_forget(path: Path, n: int) -> Path:
    """``n`` distinct fictional QA items."""
    rows = [{"question": f"What is fact number {i} about Zorblat Quenn?", "answer": f"Fact {i}: Zorblat Quenn lives in Varnholt {i}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(code: int | None, stderr: str, *needles: str) -> str:
    """Exit code 2, no traceback, exactly one ``error:`` line containing every needle (case-insensitive)."""
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errs = error_lines(stderr)
    assert len(errs) == 1, stderr
    for n in needles:
        assert n.lower() in errs[0].lower(), errs[0]
    return errs[0]


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))
