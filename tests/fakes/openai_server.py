"""A loopback OpenAI-compatible HTTP server for tests: FastAPI served by uvicorn in a thread.

Serves /v1/embeddings, /v1/models and /v1/chat/completions (JSON and SSE streaming), the same
under Azure's /openai/v1/, and the Azure deployment paths
/openai/deployments/{deployment}/chat/completions and .../embeddings.
The official `openai` clients talk to it unchanged:

    OpenAI(base_url=fake.base_url, api_key=fake.api_key)
    AzureOpenAI(azure_endpoint=fake.azure_endpoint, api_key=fake.api_key, api_version="2024-10-21")

Behaviour is deterministic:
- embeddings are signed feature hashes of words and character trigrams, L2-normalised, so
  texts sharing words are close (`fake_embedding`); `dimensions` is honoured (default 256);
- a chat reply quotes the first sentence of the text after the lowest `[docN]` marker in the
  prompt and cites it ("<sentence> [doc1]"), or says NO_ANSWER when the prompt has no `[docN]`
  documents (`fake_chat_reply`, `first_sentence`).

Control API (thread-safe; scripts are consumed in order, one per matching request):
    fake.script(status=429, times=2, retry_after=1)   # next 2 requests answer 429 + Retry-After
    fake.script(status=500, endpoint="embeddings")    # only embeddings requests consume it
    fake.script(delay_s=3)                            # the next request answers 3 s late
    fake.reply("custom text", times=1)                # the next chat completion says this
    fake.script(chunk_delay_s=0.1, endpoint="chat")   # 0.1 s a chunk (token): streamed, each
                                                      # chunk that long after the last; else
                                                      # the reply after all of them
    fake.requests / fake.requests_to("chat") / fake.last_request   # recorded, parsed bodies
    fake.stream_ends                                  # time.monotonic() as each stream ended
    fake.reset()                                      # forget scripts and recordings
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import SecretStr

from core.settings import ChatSettings
from tests.fakes.threaded import LoopbackFake

Endpoint = Literal["chat", "embeddings", "models"]

NO_ANSWER = (
    "The requested information is not available in the retrieved data. "
    "Please try another query or topic."
)
DEFAULT_DIMENSIONS = 256
CHAT_MODEL = "fake-chat"
EMBEDDING_MODEL = "fake-embedding"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_DOC_MARKER = re.compile(r"\[doc(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


# --- deterministic behaviour (pure) ------------------------------------------------------------


def fake_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """Signed feature hashing of lower-cased words (weight 1) and their trigrams (weight 0.5)."""
    vector = np.zeros(dimensions, dtype=np.float64)
    for word in _WORD.findall(text.lower()):
        _add_feature(vector, "w:" + word, 1.0)
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            _add_feature(vector, "t:" + padded[i : i + 3], 0.5)
    if not vector.any():
        _add_feature(vector, "empty", 1.0)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def _add_feature(vector: np.ndarray[Any, Any], feature: str, weight: float) -> None:
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    sign = 1.0 if digest & 1 else -1.0
    vector[(digest >> 1) % len(vector)] += sign * weight


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """All text the caller sent (system, user, tool...), assistant turns excluded."""
    parts: list[str] = []
    for message in messages:
        if message.get("role") == "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def documents_in(text: str) -> dict[int, str]:
    """`[docN]` -> the text after that marker (the longest such passage, skipping examples)."""
    documents: dict[int, str] = {}
    markers = list(_DOC_MARKER.finditer(text))
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        passage = text[marker.end() : end].strip(" \t\r\n:-*#|")
        number = int(marker.group(1))
        if len(passage) > len(documents.get(number, "")):
            documents[number] = passage
    return documents


def first_sentence(passage: str) -> str:
    """The first sentence (ending in . ! or ?) of a passage; titles on their own line are skipped.

    Falls back to the passage's first line when nothing ends like a sentence.
    """
    segments = [
        " ".join(piece.split())
        for line in passage.splitlines()
        for piece in _SENTENCE_END.split(line)
        if piece.strip()
    ]
    sentences = [s for s in segments if s[-1] in ".!?"]
    return (sentences or segments or [""])[0]


def fake_chat_reply(messages: list[dict[str, Any]]) -> str:
    """Quote the lowest-numbered document's first sentence and cite it; NO_ANSWER without docs."""
    documents = documents_in(prompt_text(messages))
    if not documents:
        return NO_ANSWER
    number = min(documents)
    return f"{first_sentence(documents[number])} [doc{number}]"


# --- scripting and recording -------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    endpoint: Endpoint
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    deployment: str | None = None


@dataclass
class Script:
    """What the next `times` matching requests do instead of the default behaviour."""

    status: int = 200
    times: int = 1
    retry_after: float | None = None
    delay_s: float = 0.0
    reply: str | None = None
    message: str | None = None
    endpoint: Endpoint | None = None
    chunk_delay_s: float = 0.0


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    scripts: list[Script] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    stream_ends: list[float] = field(default_factory=list)

    def ended_stream(self) -> None:
        with self.lock:
            self.stream_ends.append(time.monotonic())

    def take(self, endpoint: Endpoint) -> Script | None:
        with self.lock:
            for script in self.scripts:
                if script.endpoint in (None, endpoint):
                    script.times -= 1
                    if script.times <= 0:
                        self.scripts.remove(script)
                    return script
        return None


# --- the server --------------------------------------------------------------------------------


class FakeOpenAIServer(LoopbackFake):
    """An OpenAI-compatible server on 127.0.0.1:<free port>; use as a context manager."""

    _name = "fake-openai"

    def __init__(
        self,
        *,
        api_key: str | None = "fake-key",
        require_api_key: bool = False,
        embedding_dimensions: int = DEFAULT_DIMENSIONS,
    ) -> None:
        self.api_key = api_key or "unused"
        self.require_api_key = require_api_key
        self._require_api_key_default = require_api_key
        self.embedding_dimensions = embedding_dimensions
        # Real servers sort by index; set True to check that clients do not rely on it.
        self.reverse_embedding_order = False
        self._state = _State()

    # lifecycle

    def _app(self) -> FastAPI:
        return build_app(self)

    # addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """For OpenAI(base_url=...) and every OpenAI-compatible setting."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """For AzureOpenAI(azure_endpoint=...)."""
        return f"http://127.0.0.1:{self._port}"

    def chat_settings(self, *, timeout_s: float = 60.0) -> ChatSettings:
        """ondata's chat settings for this server as an OpenAI-compatible model, no retries."""
        return ChatSettings(
            provider="compatible",
            model=CHAT_MODEL,
            base_url=self.base_url,
            api_key=SecretStr(self.api_key),
            timeout_s=timeout_s,
            max_retries=0,
        )

    # control API

    def script(
        self,
        *,
        status: int = 200,
        times: int = 1,
        retry_after: float | None = None,
        delay_s: float = 0.0,
        reply: str | None = None,
        message: str | None = None,
        endpoint: Endpoint | None = None,
        chunk_delay_s: float = 0.0,
    ) -> None:
        """Queue a behaviour for the next `times` requests to `endpoint` (any when None).

        status != 200 answers an OpenAI-shaped error (`message` overrides its text; 429/503
        carry Retry-After when `retry_after` is set); delay_s waits before answering;
        reply replaces the chat text; chunk_delay_s is the time a chat reply takes per chunk
        (token), as a model generates it: streamed, each chunk comes that long after the last;
        not streamed, the reply comes after all of them.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        entry = Script(status, times, retry_after, delay_s, reply, message, endpoint, chunk_delay_s)
        with self._state.lock:
            self._state.scripts.append(entry)

    def reply(self, text: str, *, times: int = 1) -> None:
        """The next `times` chat completions answer `text` (streamed or not)."""
        self.script(reply=text, times=times, endpoint="chat")

    def reset(self) -> None:
        """Forget queued scripts and recorded requests; restore defaults."""
        with self._state.lock:
            self._state.scripts.clear()
            self._state.requests.clear()
            self._state.stream_ends.clear()
        self.reverse_embedding_order = False
        self.require_api_key = self._require_api_key_default

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    def requests_to(self, endpoint: Endpoint) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def last_request(self) -> RecordedRequest:
        requests = self.requests
        if not requests:
            raise AssertionError("the fake OpenAI server has received no request")
        return requests[-1]

    @property
    def stream_ends(self) -> list[float]:
        """`time.monotonic()` when each streamed chat reply sent its last chunk, oldest first."""
        with self._state.lock:
            return list(self._state.stream_ends)

    @property
    def pending_scripts(self) -> int:
        with self._state.lock:
            return sum(s.times for s in self._state.scripts)

    # used by the app

    def _record(self, request: RecordedRequest) -> None:
        with self._state.lock:
            self._state.requests.append(request)

    def _take(self, endpoint: Endpoint) -> Script | None:
        return self._state.take(endpoint)

    def _authorised(self, headers: dict[str, str]) -> bool:
        if not self.require_api_key:
            return True
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return self.api_key in (bearer, headers.get("api-key"))


# --- HTTP ----------------------------------------------------------------------------------------


def build_app(fake: FakeOpenAIServer) -> FastAPI:
    """The FastAPI app behind a FakeOpenAIServer."""
    app = FastAPI(title="fake OpenAI", openapi_url=None, docs_url=None, redoc_url=None)

    # /openai/v1 is Azure OpenAI's v1 API, which plain OpenAI clients call.
    @app.get("/v1/models")
    @app.get("/openai/v1/models")
    async def models(request: Request) -> Response:
        return await _handle(fake, request, "models", None)

    @app.post("/v1/embeddings")
    @app.post("/openai/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await _handle(fake, request, "embeddings", None)

    @app.post("/v1/chat/completions")
    @app.post("/openai/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _handle(fake, request, "chat", None)

    @app.post("/openai/deployments/{deployment}/embeddings")
    async def azure_embeddings(request: Request, deployment: str) -> Response:
        return await _handle(fake, request, "embeddings", deployment)

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def azure_chat(request: Request, deployment: str) -> Response:
        return await _handle(fake, request, "chat", deployment)

    return app


async def _handle(
    fake: FakeOpenAIServer, request: Request, endpoint: Endpoint, deployment: str | None
) -> Response:
    body = await _json_body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    fake._record(
        RecordedRequest(
            request.method,
            request.url.path,
            endpoint,
            headers,
            dict(request.query_params),
            body,
            deployment,
        )
    )
    script = fake._take(endpoint)
    if script and script.delay_s:
        await asyncio.sleep(script.delay_s)
    if not fake._authorised(headers):
        return error_response(401, "Incorrect API key provided.")
    if script and script.status != 200:
        return error_response(script.status, script.message, retry_after=script.retry_after)
    if endpoint == "models":
        return JSONResponse(_models_body())
    if not isinstance(body, dict):
        return error_response(400, "The request body must be a JSON object.")
    if endpoint == "embeddings":
        return _embeddings(fake, body, deployment)
    return await _chat(body, deployment, script, on_stream_end=fake._state.ended_stream)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def error_response(
    status: int, message: str | None, *, retry_after: float | None = None
) -> Response:
    """An OpenAI-shaped error body with the given status (and Retry-After headers)."""
    error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    text = message or f"The fake server was scripted to answer HTTP {status}."
    headers = {}
    if retry_after is not None:
        headers = {"retry-after": f"{retry_after:g}", "retry-after-ms": f"{retry_after * 1000:.0f}"}
    payload = {"error": {"message": text, "type": error_type, "param": None, "code": code}}
    return JSONResponse(payload, status_code=status, headers=headers)


def _models_body() -> dict[str, Any]:
    data = [
        {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
        for name in (CHAT_MODEL, EMBEDDING_MODEL)
    ]
    return {"object": "list", "data": data}


def _embeddings(fake: FakeOpenAIServer, body: dict[str, Any], deployment: str | None) -> Response:
    texts = _embedding_inputs(body.get("input"))
    dimensions = body.get("dimensions") or fake.embedding_dimensions
    if texts is None or not isinstance(dimensions, int) or dimensions < 1:
        return error_response(400, "'input' must be text or a list; 'dimensions' a positive int")
    vectors = [_encode(fake_embedding(text, dimensions), body) for text in texts]
    rows = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    if fake.reverse_embedding_order:
        rows.reverse()
    tokens = sum(len(_WORD.findall(t)) for t in texts)
    return JSONResponse(
        {
            "object": "list",
            "data": rows,
            "model": deployment or body.get("model", EMBEDDING_MODEL),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _embedding_inputs(raw: Any) -> list[str] | None:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(x, int) for x in raw):  # one pre-tokenised input
        return [" ".join(map(str, raw))]
    return [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]


def _encode(vector: list[float], body: dict[str, Any]) -> list[float] | str:
    if body.get("encoding_format") == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


async def _chat(
    body: dict[str, Any],
    deployment: str | None,
    script: Script | None,
    *,
    on_stream_end: Callable[[], None],
) -> Response:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(400, "'messages' must be a non-empty list.")
    text = script.reply if script and script.reply is not None else fake_chat_reply(messages)
    model = deployment or body.get("model") or CHAT_MODEL
    usage = _usage(messages, text)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        delay = script.chunk_delay_s if script else 0.0
        events = _stream(text, model, usage if include_usage else None, delay, on_stream_end)
        return StreamingResponse(events, media_type="text/event-stream")
    if script and script.chunk_delay_s:
        await asyncio.sleep(script.chunk_delay_s * sum(1 for _ in _deltas(text)))
    return JSONResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
    )


def _usage(messages: list[dict[str, Any]], reply: str) -> dict[str, int]:
    prompt = len(_WORD.findall(prompt_text(messages)))
    completion = len(_WORD.findall(reply))
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


async def _stream(
    text: str,
    model: str,
    usage: dict[str, int] | None,
    delay_s: float,
    on_end: Callable[[], None],
) -> AsyncIterator[str]:
    chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    for delta, finish in _deltas(text):
        if delay_s:
            await asyncio.sleep(delay_s)
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        yield _sse(_chunk(chunk_id, created, model, [choice]))
    if usage is not None:
        yield _sse({**_chunk(chunk_id, created, model, []), "usage": usage})
    yield "data: [DONE]\n\n"
    on_end()


def _deltas(text: str) -> Iterator[tuple[dict[str, str], str | None]]:
    yield {"role": "assistant", "content": ""}, None
    for piece in re.findall(r"\S+\s*", text):
        yield {"content": piece}, None
    yield {}, "stop"


def _chunk(chunk_id: str, created: int, model: str, choices: list[Any]) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
