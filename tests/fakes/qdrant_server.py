"""A Qdrant server stand-in for multi-process tests: qdrant-client's local engine behind the
REST routes that qdrant-client's HTTP transport calls, on 127.0.0.1:<free port>.

There is no Qdrant server binary on this machine, and qdrant-client's local mode keeps its data
inside one process (a file lock guards its directory). Served over HTTP from one process, the
same engine can be shared by `ondata serve` and N `ondata worker` processes that all run the
real server code path: `QdrantServerIndex` with `QdrantClient(url=...)`, its REST transport and
JSON models. What it does not reproduce: the real server's Rust engine (HNSW, payload indexes,
segments, optimisers), gRPC, clustering and consistency settings.

Covered routes (what QdrantServerIndex uses, plus listing):
    GET    /collections, /collections/{c}, /collections/{c}/exists
    PUT    /collections/{c}                  DELETE /collections/{c}
    PATCH  /collections/{c} (metadata only)  PUT    /collections/{c}/points/vectors
    PUT    /collections/{c}/index            PUT    /collections/{c}/points
    POST   /collections/{c}/points/delete    POST   /collections/{c}/points/scroll
    POST   /collections/{c}/points/query     POST   /collections/{c}/points/count
    POST   /collections/{c}/points (retrieve by id)

Every call goes through one lock: the local engine is not thread-safe.

    with QdrantStandIn(path=tmp_path / "qdrant") as qdrant:
        settings = Settings(index=IndexSettings(backend="server", url=qdrant.url))
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models as qm

from tests.fakes.threaded import ThreadedServer

_INSERT = TypeAdapter(qm.PointInsertOperations)
_SELECTOR = TypeAdapter(qm.PointsSelector)


def _ok(result: Any, started: float) -> JSONResponse:
    body = {"result": jsonable_encoder(result), "status": "ok", "time": time.monotonic() - started}
    return JSONResponse(body)


def _failed(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": 0.0}, status_code=status)


class QdrantStandIn:
    """The stand-in server; a context manager. `url` is what ONDATA_INDEX__URL should be."""

    def __init__(self, *, path: Path | None = None) -> None:
        # path: the engine persists there (so a restarted stand-in keeps its collections)
        self._engine = QdrantClient(path=str(path)) if path else QdrantClient(location=":memory:")
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.port = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def engine(self) -> QdrantClient:
        """The local engine itself, for assertions (take `lock` around calls)."""
        return self._engine

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def start(self) -> QdrantStandIn:
        self._server = ThreadedServer(build_app(self), name="qdrant-stand-in")
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None
        self._engine.close()

    def __enter__(self) -> QdrantStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, operation: Callable[[QdrantClient], Any]) -> JSONResponse:
        """Run one engine operation under the lock and render Qdrant's response envelope."""
        started = time.monotonic()
        with self._lock, warnings.catch_warnings():
            # local mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore", UserWarning)
            self.requests += 1
            try:
                return _ok(operation(self._engine), started)
            except ValidationError as exc:
                return _failed(422, f"Format error in JSON body: {exc.errors()[0]['msg']}")
            except ValueError as exc:
                status = 404 if "not found" in str(exc).lower() else 400
                return _failed(status, f"Wrong input: {exc}")


def build_app(stand_in: QdrantStandIn) -> FastAPI:
    """The REST routes; bodies are parsed with qdrant-client's own models."""
    app = FastAPI(title="qdrant stand-in")
    call = stand_in.call

    @app.get("/collections")
    def collections() -> JSONResponse:
        return call(lambda q: q.get_collections())

    @app.get("/collections/{name}/exists")
    def exists(name: str) -> JSONResponse:
        return call(lambda q: qm.CollectionExistence(exists=q.collection_exists(name)))

    @app.get("/collections/{name}")
    def collection(name: str) -> JSONResponse:
        return call(lambda q: q.get_collection(name))

    @app.put("/collections/{name}")
    async def create(name: str, request: Request) -> JSONResponse:
        body = await request.json()
        return call(lambda q: _create_collection(q, name, body))

    @app.delete("/collections/{name}")
    def drop(name: str) -> JSONResponse:
        return call(lambda q: q.delete_collection(name))

    @app.put("/collections/{name}/index")
    async def payload_index(name: str, request: Request) -> JSONResponse:
        spec = qm.CreateFieldIndex.model_validate(await request.json())
        return call(
            lambda q: q.create_payload_index(name, spec.field_name, spec.field_schema, wait=True)
        )

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> JSONResponse:
        operations = await request.json()
        return call(lambda q: _upsert(q, name, _INSERT.validate_python(operations)))

    @app.put("/collections/{name}/points/vectors")
    async def update_vectors(name: str, request: Request) -> JSONResponse:
        body = qm.UpdateVectors.model_validate(await request.json())
        return call(lambda q: q.update_vectors(name, points=body.points, wait=True))

    @app.patch("/collections/{name}")
    async def update(name: str, request: Request) -> JSONResponse:
        body = qm.UpdateCollection.model_validate(await request.json())
        return call(lambda q: q.update_collection(name, metadata=body.metadata))

    @app.post("/collections/{name}/points/delete")
    async def delete(name: str, request: Request) -> JSONResponse:
        selector = await request.json()
        return call(lambda q: q.delete(name, _SELECTOR.validate_python(selector), wait=True))

    @app.post("/collections/{name}/points/scroll")
    async def scroll(name: str, request: Request) -> JSONResponse:
        body = qm.ScrollRequest.model_validate(await request.json())
        return call(lambda q: _scroll(q, name, body))

    @app.post("/collections/{name}/points/query")
    async def query(name: str, request: Request) -> JSONResponse:
        body = qm.QueryRequest.model_validate(await request.json())
        return call(lambda q: _query(q, name, body))

    @app.post("/collections/{name}/points")
    async def retrieve(name: str, request: Request) -> JSONResponse:
        body = qm.PointRequest.model_validate(await request.json())
        payload = True if body.with_payload is None else body.with_payload
        return call(
            lambda q: q.retrieve(
                name, ids=body.ids, with_payload=payload, with_vectors=body.with_vector or False
            )
        )

    @app.post("/collections/{name}/points/count")
    async def count(name: str, request: Request) -> JSONResponse:
        body = qm.CountRequest.model_validate(await request.json())
        return call(
            lambda q: q.count(name, count_filter=body.filter, exact=body.exact is not False)
        )

    return app


def _create_collection(q: QdrantClient, name: str, body: dict[str, Any]) -> bool:
    spec = qm.CreateCollection.model_validate(body)
    if q.collection_exists(name):
        raise ValueError(f"Collection `{name}` already exists!")
    return q.create_collection(
        name, vectors_config=spec.vectors or {}, sparse_vectors_config=spec.sparse_vectors
    )


def _upsert(q: QdrantClient, name: str, operations: Any) -> qm.UpdateResult:
    points = operations.batch if isinstance(operations, qm.PointsBatch) else operations.points
    return q.upsert(name, points=points, wait=True)


def _scroll(q: QdrantClient, name: str, body: qm.ScrollRequest) -> qm.ScrollResult:
    records, offset = q.scroll(
        name,
        scroll_filter=body.filter,
        limit=body.limit or 10,
        offset=body.offset,
        with_payload=True if body.with_payload is None else body.with_payload,
        with_vectors=body.with_vector or False,
        order_by=body.order_by,
    )
    return qm.ScrollResult(points=records, next_page_offset=offset)


def _query(q: QdrantClient, name: str, body: qm.QueryRequest) -> qm.QueryResponse:
    return q.query_points(
        name,
        query=body.query,
        using=body.using,
        prefetch=body.prefetch,
        query_filter=body.filter,
        search_params=body.params,
        limit=body.limit or 10,
        offset=body.offset,
        score_threshold=body.score_threshold,
        with_payload=True if body.with_payload is None else body.with_payload,
        with_vectors=body.with_vector or False,
    )
