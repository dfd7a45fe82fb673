"""Rerankers: a cross-encoder scores (query, passage) pairs, behind one protocol, remote or local.

Scores are relevances in 0..1 (higher is better): what the Cohere-style rerank APIs return
(`relevance_score`), TEI returns by default, and the local adapter computes (the sigmoid of a
one-label cross-encoder's logit). Strictness applies floors on that scale (retrieval/search.py).

RemoteReranker retries 408/429/5xx, timeouts and dropped connections up to ``max_retries``
times (honouring Retry-After up to ``timeout_s``); what still fails becomes
RerankerRateLimitError (429, with retry_after), RerankerTimeoutError (504) or RerankerError
(502). LocalReranker raises RerankerModelError when the directory holds no usable model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from core.errors import (
    RerankerError,
    RerankerModelError,
    RerankerRateLimitError,
    RerankerTimeoutError,
)
from core.settings import RerankSettings, disable_library_network
from retrieval.rerank_onnx import OnnxCrossEncoder, ensure_cross_encoder_onnx

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)

RerankApi = Literal["cohere", "tei"]
RerankRuntime = Literal["onnx", "torch"]
_RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 8.0


class Reranker(Protocol):
    """Scores passages against a query with a cross-encoder."""

    @property
    def name(self) -> str:
        """The model's name (remote: as configured; local: the directory's name)."""
        ...

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """One relevance (0..1, higher is better) per document, in the documents' order;
        all of them scored in one request or one batched model run."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client or the model."""
        ...


class RemoteReranker:
    """A rerank endpoint: Cohere, Jina, Voyage, vLLM, Infinity (api=cohere) or TEI (api=tei)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        model: str | None = None,
        api: RerankApi = "cohere",
        max_retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        self._client = client
        self._model = model
        self._api: RerankApi = api
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings: RerankSettings, *, backoff_s: float = 0.5) -> RemoteReranker:
        """The client for `settings.base_url` (`POST {base_url}/rerank`); retries wait
        `backoff_s` doubling per attempt unless the server says how long."""
        if not settings.base_url:
            raise RerankerModelError("rerank.backend=remote needs ONDATA_RERANK__BASE_URL")
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=settings.timeout_s,
        )
        return cls(
            client,
            model=settings.model,
            api=settings.api,
            max_retries=settings.max_retries,
            backoff_s=backoff_s,
        )

    @property
    def name(self) -> str:
        return self._model or str(self._client.base_url)

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        response = await self._post(self._payload(query, documents))
        try:
            body = response.json()
        except ValueError as exc:
            raise RerankerError(f"reranker {self.name} sent a body that is not JSON") from exc
        return scores_in_order(body, len(documents), name=self.name)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _payload(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        if self._api == "tei":
            return {"query": query, "texts": list(documents), "truncate": True}
        payload: dict[str, Any] = {
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
        }
        if self._model:
            payload["model"] = self._model
        return payload

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """The answer to one rerank request, retried on what retrying may fix."""
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = await self._client.post("rerank", json=payload)
            except httpx.TransportError as exc:
                if last:
                    raise self._transport_error(exc) from exc
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.is_success:
                return response
            await self._wait_or_raise(response, attempt, last=last)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _wait_or_raise(self, response: httpx.Response, attempt: int, *, last: bool) -> None:
        """Sleep before the next attempt, or raise the domain error for this response."""
        retry_after = retry_after_s(response.headers)
        timeout = self._client.timeout.read or _MAX_BACKOFF_S
        too_long = retry_after is not None and retry_after > timeout
        if last or too_long or response.status_code not in _RETRIED_STATUSES:
            raise self._error(response, retry_after)
        logger.info("reranker %s answered HTTP %d; retrying", self.name, response.status_code)
        await asyncio.sleep(retry_after if retry_after is not None else self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_s * 2**attempt, _MAX_BACKOFF_S))

    def _transport_error(self, exc: httpx.TransportError) -> RerankerError:
        if isinstance(exc, httpx.TimeoutException):
            return RerankerTimeoutError(f"reranker {self.name} did not answer in time")
        return RerankerError(f"reranker {self.name} could not be reached: {exc}")

    def _error(self, response: httpx.Response, retry_after: float | None) -> RerankerError:
        message = (
            f"reranker {self.name} answered HTTP {response.status_code}: {_upstream(response)}"
        )
        if response.status_code == 429:
            return RerankerRateLimitError(message, retry_after=retry_after)
        return RerankerError(message)


def scores_in_order(body: Any, count: int, *, name: str) -> list[float]:
    """The scores of a rerank response, in document order.

    Accepts `{"results": [{"index", "relevance_score"}]}` (Cohere, Jina, vLLM, Infinity)
    and `[{"index", "score"}]` (TEI); raises RerankerError unless every document has one.
    """
    rows = body.get("results") if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise RerankerError(f"reranker {name} sent no results list")
    scores: dict[int, float] = {}
    for row in rows:
        index, score = _index_and_score(row)
        if index is None or score is None or not 0 <= index < count:
            raise RerankerError(f"reranker {name} sent a malformed result: {row!r:.200}")
        scores[index] = score
    if len(scores) != count:
        raise RerankerError(f"reranker {name} scored {len(scores)} of {count} documents")
    return [scores[i] for i in range(count)]


def _index_and_score(row: Any) -> tuple[int | None, float | None]:
    if not isinstance(row, dict):
        return None, None
    index = row.get("index")
    score = row.get("relevance_score", row.get("score"))
    valid_index = isinstance(index, int) and not isinstance(index, bool)
    if not isinstance(score, int | float) or isinstance(score, bool):
        return (index if valid_index else None), None
    return (index if valid_index else None), float(score)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from Retry-After-Ms or Retry-After (seconds); None if absent or a date."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(float(headers[name]) / divisor, 0.0)
        except (KeyError, ValueError):
            continue
    return None


def _upstream(response: httpx.Response) -> str:
    """The error text the server sent (OpenAI / Cohere / TEI shapes), else its start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = body.get("error", body.get("message", body.get("detail", body)))
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        return str(detail)[:200]
    return str(body)[:200]


class LocalReranker:
    """A cross-encoder from a local directory (one output label), on ONNX Runtime or torch.

    Runs in a worker thread; `rerank` scores all pairs in one call, in batches of
    `batch_size`. `runtime` says which engine loaded ("onnx" or "torch").
    """

    def __init__(
        self,
        model: CrossEncoder | OnnxCrossEncoder,
        *,
        name: str,
        batch_size: int = 32,
    ) -> None:
        self._model = model
        self._name = name
        self._batch_size = batch_size
        self.runtime: RerankRuntime = "onnx" if isinstance(model, OnnxCrossEncoder) else "torch"
        # torch already spreads one run over every core: concurrent runs (an intent's queries,
        # other requests) would only fight over them, so they take turns
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        batch_size: int = 32,
        max_length: int = 512,
        runtime: Literal["auto", "onnx", "torch"] = "auto",
        export_dir: Path | None = None,
    ) -> LocalReranker:
        """Load the model in `path`; raises RerankerModelError when there is none to load.

        runtime onnx runs an export of the model on ONNX Runtime (made and checked against
        torch on first load; 2-3x faster on CPU, bench/rerank.py); auto does so and falls back
        to torch, with a warning, when the model does not export; torch never exports.
        """
        if not (path / "config.json").is_file():
            raise RerankerModelError(
                f"rerank.path={str(path)!r} is not a model directory (no config.json); "
                "download a cross-encoder there first"
            )
        disable_library_network()  # a directory only: nothing may be fetched from a hub
        model = _load_cross_encoder(path, max_length)
        if model.num_labels != 1:
            raise RerankerModelError(
                f"the model in {path} has {model.num_labels} output labels; a reranker has one"
            )
        if runtime == "torch":
            return cls(model, name=path.name, batch_size=batch_size)
        try:
            export = ensure_cross_encoder_onnx(path, export_dir=export_dir)
            session = OnnxCrossEncoder(export, max_length=max_length)
        except Exception as exc:  # torch.onnx and onnxruntime raise many kinds
            if runtime == "onnx":
                if isinstance(exc, RerankerModelError):
                    raise
                raise RerankerModelError(f"cannot run {path} on ONNX Runtime: {exc}") from exc
            logger.warning("reranking on torch: %s did not export to ONNX (%s)", path, exc)
            return cls(model, name=path.name, batch_size=batch_size)
        return cls(session, name=path.name, batch_size=batch_size)

    @property
    def name(self) -> str:
        return self._name

    async def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        return await asyncio.to_thread(self.score, query, documents)

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """The blocking body of `rerank`."""
        model = self._model
        if isinstance(model, OnnxCrossEncoder):
            with self._lock:
                return model.score(query, documents, batch_size=self._batch_size)
        import torch

        with self._lock:
            scores = model.predict(
                [(query, document) for document in documents],
                batch_size=self._batch_size,
                activation_fn=torch.nn.Sigmoid(),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [float(s) for s in scores]

    async def aclose(self) -> None:
        return None


def _load_cross_encoder(path: Path, max_length: int) -> CrossEncoder:
    from sentence_transformers import CrossEncoder

    try:
        model: CrossEncoder = CrossEncoder(
            str(path), device="cpu", local_files_only=True, max_length=max_length
        )
        return model
    except (OSError, ValueError) as exc:
        raise RerankerModelError(f"cannot load the cross-encoder in {path}: {exc}") from exc


def make_reranker(settings: RerankSettings) -> Reranker | None:
    """The configured reranker, or None when rerank.backend is none."""
    if settings.backend == "none":
        return None
    if settings.backend == "remote":
        return RemoteReranker.from_settings(settings)
    if settings.path is None:
        raise RerankerModelError("rerank.backend=local needs ONDATA_RERANK__PATH")
    return LocalReranker.load(
        settings.path,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        runtime=settings.runtime,
    )
