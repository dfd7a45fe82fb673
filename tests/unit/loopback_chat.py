"""A scripted OpenAI-compatible chat server on a loopback port, for the chat adapter tests.

Stand-in until tests/fakes/openai_server.py lands: each request takes the next scripted step
(a reply text, an HTTP error status with headers, or a delay), records what was sent, and
answers as OpenAI would, streaming (SSE) when asked. The official ``openai`` client talks to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """Answer 200 with this text (usage 11 prompt / 7 completion tokens)."""

    text: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Answer this HTTP status with an OpenAI-shaped error body and these headers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


Step = Reply | Fail


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ChatServer:
    """A loopback server answering /chat/completions from a script (default: a fixed reply)."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.requests: list[Recorded] = []
        self.default = Reply("Nothing scripted.")
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def next_step(self, record: Recorded) -> Step:
        with self._lock:
            self.requests.append(record)
            return self.script.pop(0) if self.script else self.default

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            record = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            step = server.next_step(record)
            if isinstance(step, Fail):
                return self._send_json(step.status, _error(step.status), step.headers)
            time.sleep(step.delay_s)
            if body.get("stream"):
                return self._send_stream(body.get("model", "m"), step.text)
            return self._send_json(200, _completion(body.get("model", "m"), step.text), {})

        def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, model: str, text: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for piece in _pieces(text):
                self.wfile.write(b"data: " + json.dumps(_chunk(model, piece)).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: " + json.dumps(_chunk(model, None)).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    return Handler


def _pieces(text: str, size: int = 5) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _error(status: int) -> dict[str, Any]:
    return {
        "error": {
            "message": f"scripted {status}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def _chunk(model: str, piece: str | None) -> dict[str, Any]:
    delta = {"content": piece} if piece is not None else {}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece else "stop"}],
    }
