"""A loopback rerank server for tests: FastAPI served by uvicorn in a thread.

Serves `POST /rerank` and `POST /v1/rerank` in the Cohere / Jina / vLLM shape
(`{"model", "query", "documents", "top_n"}` -> `{"results": [{"index", "relevance_score"}]}`,
best first, cut to top_n) and, when the body names `texts` instead of `documents`, in TEI's
shape (`[{"index", "score"}]`). Scores are deterministic: the share of the query's words that
the document contains (`overlap_score`), so a document sharing more query words ranks higher.

Control API (thread-safe, scripts consumed in order, as in tests/fakes/openai_server.py):
    fake.script(status=429, times=2, retry_after=0.05)  # next 2 requests answer 429
    fake.script(delay_s=3)                             # the next request answers 3 s late
    fake.requests / fake.last_request                  # recorded, parsed bodies
    fake.reset()
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from core.settings import RerankSettings
from tests.fakes.openai_server import RecordedRequest, Script, _State, error_response
from tests.fakes.threaded import LoopbackFake

RERANK_MODEL = "fake-reranker"
_WORD = re.compile(r"\w+")


def overlap_score(query: str, document: str) -> float:
    """The share of the query's distinct words found in the document (0..1)."""
    words = set(_WORD.findall(query.lower()))
    if not words:
        return 0.0
    return len(words & set(_WORD.findall(document.lower()))) / len(words)


class FakeRerankServer(LoopbackFake):
    """A rerank endpoint on 127.0.0.1:<free port>; use as a context manager."""

    _name = "fake-rerank"

    def __init__(self) -> None:
        self._state = _State()

    def _app(self) -> FastAPI:
        return _build_app(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def settings(self, *, timeout_s: float = 10.0, max_retries: int = 2) -> RerankSettings:
        """ondata's rerank settings for this server."""
        return RerankSettings(
            backend="remote",
            base_url=self.base_url,
            model=RERANK_MODEL,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )

    def script(
        self,
        *,
        status: int = 200,
        times: int = 1,
        retry_after: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue a behaviour (an error status, a delay) for the next `times` requests."""
        with self._state.lock:
            self._state.scripts.append(
                Script(status=status, times=times, retry_after=retry_after, delay_s=delay_s)
            )

    def reset(self) -> None:
        with self._state.lock:
            self._state.scripts.clear()
            self._state.requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake rerank server has received no request")
        return self.requests[-1]

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = RecordedRequest(request.method, request.url.path, "models", headers, {}, body)
        with self._state.lock:
            self._state.requests.append(recorded)
        script = self._state.take("models")
        if script and script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script and script.status != 200:
            return error_response(script.status, None, retry_after=script.retry_after)
        return _reply(body)


def _reply(body: Any) -> Response:
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return error_response(400, "'query' must be a string")
    tei = "texts" in body
    documents = body.get("texts" if tei else "documents")
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        return error_response(400, "'documents' must be a list of strings")
    scores = [overlap_score(body["query"], d) for d in documents]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if tei:
        return JSONResponse([{"index": i, "score": scores[i]} for i in order])
    top_n = body.get("top_n") or len(order)
    results = [{"index": i, "relevance_score": scores[i]} for i in order[:top_n]]
    return JSONResponse({"model": body.get("model", RERANK_MODEL), "results": results})


def _build_app(fake: FakeRerankServer) -> FastAPI:
    app = FastAPI(title="fake rerank", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_api_route("/rerank", fake.handle, methods=["POST"])
    app.add_api_route("/v1/rerank", fake.handle, methods=["POST"])
    return app
