"""ondata as a llama-index retriever: `OndataRetriever` queries a running ondata server's
`POST /v1/search` and returns llama-index `NodeWithScore`s (sync and async).

    from retrieval.llama_index import OndataRetriever
    retriever = OndataRetriever(url="http://127.0.0.1:8000", index_name="handbook", api_key=KEY)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)

The key decides what is found: its index scope and ACL groups apply on the server, as for
every other path. Errors the server answers become ondata's own (AuthenticationError 401,
PermissionDeniedError 403, IndexNotFoundError 404, InvalidRequestError 400/422,
RateLimitedError 429); an unreachable or failing server is an OndataServerError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from core.errors import (
    AuthenticationError,
    IndexNotFoundError,
    InvalidRequestError,
    OndataError,
    PermissionDeniedError,
    RateLimitedError,
)

MODES: dict[str, str] = {
    "keyword": "simple",
    "vector": "vector",
    "hybrid": "vector_simple_hybrid",
    "semantic": "semantic",
    "semantic_hybrid": "vector_semantic_hybrid",
    "simple": "simple",
    "vector_simple_hybrid": "vector_simple_hybrid",
    "vector_semantic_hybrid": "vector_semantic_hybrid",
}
"""`mode` -> /v1/search `query_type` (ondata's names and the OYD query types both work)."""

CITATION_KEYS = ("title", "url", "filepath", "page", "doc_id", "chunk_id", "section")


class OndataServerError(OndataError):
    """The ondata server could not be reached, or failed to answer a search."""

    status_code = 502
    error_type = "server_error"
    code = "ondata_server_error"


class OndataRetriever(BaseRetriever):
    """Retrieves chunks of one ondata index over HTTP; node ids are the chunks' ids and node
    metadata carries what a citation needs (title, url, filepath, page, doc_id, chunk_id)."""

    def __init__(
        self,
        *,
        url: str,
        index_name: str,
        api_key: str | None = None,
        mode: str | None = None,
        top_k: int = 5,
        filter: str | Mapping[str, Any] | None = None,
        strictness: int = 3,
        timeout_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise InvalidRequestError(f"mode {mode!r} is not one of {sorted(MODES)}", param="mode")
        self.url = url.rstrip("/")
        self.index_name = index_name
        self.mode = mode
        self.top_k = top_k
        self.filter = filter
        self.strictness = strictness
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        try:
            with httpx.Client(timeout=self.timeout_s, headers=self._headers) as client:
                response = client.post(f"{self.url}/v1/search", json=self._body(query_bundle))
        except httpx.HTTPError as exc:
            raise OndataServerError(f"cannot reach {self.url}: {exc}") from exc
        return nodes_from(self._checked(response))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers) as client:
                response = await client.post(f"{self.url}/v1/search", json=self._body(query_bundle))
        except httpx.HTTPError as exc:
            raise OndataServerError(f"cannot reach {self.url}: {exc}") from exc
        return nodes_from(self._checked(response))

    def _body(self, query_bundle: QueryBundle) -> dict[str, Any]:
        body: dict[str, Any] = {
            "index_name": self.index_name,
            "query": query_bundle.query_str,
            "top_n_documents": self.top_k,
            "strictness": self.strictness,
        }
        if self.mode is not None:
            body["query_type"] = MODES[self.mode]
        if self.filter is not None:
            body["filter"] = (
                self.filter if isinstance(self.filter, str) else json.dumps(dict(self.filter))
            )
        return body

    def _checked(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise error_for(response, url=self.url, index_name=self.index_name)
        body: dict[str, Any] = response.json()
        return body


def nodes_from(body: Mapping[str, Any]) -> list[NodeWithScore]:
    """/v1/search results as scored nodes, best first (the server's order)."""
    nodes: list[NodeWithScore] = []
    for hit in body.get("results", []):
        metadata = {key: hit.get(key) for key in CITATION_KEYS}
        metadata.update(hit.get("metadata") or {})
        node = TextNode(id_=hit["chunk_id"], text=hit.get("content", ""), metadata=metadata)
        score = hit.get("rerank_score")
        nodes.append(NodeWithScore(node=node, score=hit["score"] if score is None else score))
    return nodes


def error_for(response: httpx.Response, *, url: str, index_name: str) -> OndataError:
    """The ondata error a failed /v1/search answer stands for."""
    message = _message(response)
    status = response.status_code
    if status == 401:
        return AuthenticationError(f"{url} rejected or needs the API key: {message}")
    if status == 403:
        return PermissionDeniedError(message)
    if status == 404:
        return IndexNotFoundError(f"{url} has no index {index_name!r}: {message}")
    if status == 429:
        retry = float(response.headers.get("Retry-After") or 1)
        return RateLimitedError(message, retry_after=retry)
    if status in (400, 413, 422):
        return InvalidRequestError(message)
    return OndataServerError(f"{url} answered {status}: {message}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
