"""OpenAI-compatible backend against a real HTTP server on 127.0.0.1 serving the tiny model."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from helpers_openai_server import serve_openai
from ulmr.data.records import load_qa
from ulmr.generate import BackendError, GenerateConfig, LocalBackend, OpenAIBackend, load_prompt, restructure

pytestmark = pytest.mark.usefixtures("one_thread")


SECRET = "sk-test-DO-NOT-LEAK-4f9a2c"


@pytest.fixture(scope="module")
def local(tiny):
    return LocalBackend(*tiny)


def _backend(url: str, **kw) -> OpenAIBackend:
    return OpenAIBackend(url, "tiny", api_key_env="ULMR_TEST_KEY", timeout=30, backoff=0.01, **kw)


def test_chat_sends_few_shot_turns_as_messages(local):
    conv = load_prompt("rewrite").conversation("Who is X?")
    with serve_openai(local) as srv:
        out = _backend(srv.url + "/v1", max_workers=3).chat([conv, conv, conv], 5, 0.0, seed=7)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert srv.requests[0]["messages"] == conv
    assert sorted(r["seed"] for r in srv.requests) == [7, 8, 9]  # distinct per conversation
    assert all(r["max_tokens"] == 5 and r["model"] == "tiny" for r in srv.requests)


def test_matches_local_backend_greedy(local):
    conv = [{"role": "user", "content": "Hello?"}]
    with serve_openai(local) as srv:
        remote = _backend(srv.url).chat([conv], 6, 0.0, seed=0)
    assert remote == local.chat([conv], 6, 0.0, seed=0)


def test_retries_503_then_succeeds(local, caplog):
    with serve_openai(local, fail_first=1, fail_status=503) as srv, caplog.at_level(logging.WARNING):
        out = _backend(srv.url).chat([[{"role": "user", "content": "hi"}]], 3, 0.0, seed=0)
    assert len(out) == 1 and len(srv.requests) == 2
    assert "HTTP 503" in caplog.text and "retry 1/5" in caplog.text


def test_retries_429_and_gives_up_after_max_retries(local):
    with serve_openai(local, fail_first=10, fail_status=429) as srv:
        with pytest.raises(BackendError, match="failed after 3 attempts"):
            _backend(srv.url, max_retries=2).chat([[{"role": "user", "content": "hi"}]], 3, 0.0, seed=0)
    assert len(srv.requests) == 3


def test_client_error_is_not_retried(local):
    with serve_openai(local, fail_first=1, fail_status=400) as srv:
        with pytest.raises(BackendError, match="HTTP 400"):
            _backend(srv.url).chat([[{"role": "user", "content": "hi"}]], 3, 0.0, seed=0)
    assert len(srv.requests) == 1


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        _backend(f"http://127.0.0.1:{port}", max_retries=1).chat([[{"role": "user", "content": "hi"}]], 3, 0.0, seed=0)


def test_api_key_is_sent_but_never_logged_stored_or_raised(local, qa_file, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ULMR_TEST_KEY", SECRET)
    cache = tmp_path / "cache.jsonl"
    with serve_openai(local, fail_first=2, fail_status=503) as srv, caplog.at_level(logging.DEBUG):
        backend = _backend(srv.url, max_workers=2)
        cfg = GenerateConfig(num_rewrites=1, max_new_tokens=4, gen_batch_size=8, max_tries=1)
        res = restructure(load_qa(qa_file), backend, cfg, cache)
    assert srv.auth_headers and all(h == f"Bearer {SECRET}" for h in srv.auth_headers)
    assert len(res.rows) == 6
    assert SECRET not in caplog.text and "retry" in caplog.text
    assert SECRET not in json.dumps(res.rows) + json.dumps(res.probes) + json.dumps(res.stats)
    assert SECRET not in cache.read_text() and SECRET not in repr(backend) and SECRET not in json.dumps(vars(backend), default=str)
    # a server that echoes the credentials in its error body: the exception is redacted
    with serve_openai(local, error_echo_auth=True) as srv:
        with pytest.raises(BackendError) as err:
            _backend(srv.url).chat([[{"role": "user", "content": "hi"}]], 3, 0.0, seed=0)
    assert "HTTP 401" in str(err.value) and SECRET not in str(err.value) and "***" in str(err.value)


def test_bad_base_url():
    with pytest.raises(BackendError, match="base_url"):
        OpenAIBackend("localhost:8000", "m")
