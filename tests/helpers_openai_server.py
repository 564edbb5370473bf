"""A real local OpenAI-compatible server for tests: ``/v1/chat/completions`` on 127.0.0.1 served by any
generation backend (e.g. LocalBackend over the tiny model), with injectable failures."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class ServerState:
    """What the server saw and how it should misbehave."""

    backend: object
    fail_first: int = 0  # answer this many requests with ``fail_status`` first
    fail_status: int = 503
    error_echo_auth: bool = False  # answer 401 with the Authorization header echoed in the body
    requests: list[dict] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    failures_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            auth = self.headers.get("Authorization")
            with state.lock:
                state.requests.append(body)
                state.auth_headers.append(auth)
                if state.error_echo_auth:
                    self._send(401, {"error": {"message": f"invalid credentials: {auth}"}})
                    return
                if state.failures_sent < state.fail_first:
                    state.failures_sent += 1
                    self._send(state.fail_status, {"error": {"message": "temporarily unavailable"}})
                    return
                # one request at a time through the model (torch modules are not re-entrant)
                text = state.backend.chat(
                    [body["messages"]], int(body.get("max_tokens", 16)), float(body.get("temperature", 0.0)),
                    int(body.get("seed", 0)), top_p=float(body.get("top_p", 1.0)),
                )[0]
            self._send(200, {
                "id": "chatcmpl-test", "object": "chat.completion", "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })

    return Handler


@contextmanager
def serve_openai(backend, **kwargs) -> Iterator[ServerState]:
    """Start the server on a free port in a thread; yields its state (``state.url`` is the base URL)."""
    state = ServerState(backend, **kwargs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
