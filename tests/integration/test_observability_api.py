"""/metrics, request ids, structured access logs and Server-Timing on the real app over HTTP."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.observability import request_id_from, server_timing
from core.logging import JsonFormatter, RequestIdFilter, request_id_var
from core.metrics import Timings
from core.settings import Settings
from tests.integration.api_support import INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"
TIMING = re.compile(r"(\w+);dur=(\d+(?:\.\d+)?)")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("observability")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    """JSON lines of the `ondata.access` logger while the test runs."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ondata.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(level)


def _chat(*, stream: bool = False) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": QUESTION}],
        "data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}],
        "stream": stream,
    }


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_template_and_status(http: httpx.Client) -> None:
    before = http.get("/metrics").text
    assert http.post("/v1/search", json={"index_name": INDEX, "query": QUESTION}).status_code == 200
    assert http.post("/v1/search", json={"index_name": "nope", "query": "x"}).status_code == 404
    after = http.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    labels = {"route": "/v1/search", "method": "POST"}
    for status in ("200", "404"):
        grew = _sample(after.text, "ondata_http_requests_total", status=status, **labels)
        assert grew == _sample(before, "ondata_http_requests_total", status=status, **labels) + 1
    count = "ondata_http_request_duration_seconds_count"
    assert _sample(after.text, count, **labels) >= 2


def test_metrics_expose_ingestion_embedding_and_queue_families(http: httpx.Client) -> None:
    http.post("/v1/search", json={"index_name": INDEX, "query": "badges for visitors?"})
    metrics = http.get("/metrics").text
    # the module's index was built in this process: three documents, their chunks
    assert _sample(metrics, "ondata_ingest_documents_total", outcome="ingested") >= 3
    assert _sample(metrics, "ondata_ingest_chunks_total") >= 3
    assert _sample(metrics, "ondata_embedding_duration_seconds_count", kind="documents") >= 1
    assert _sample(metrics, "ondata_embedding_duration_seconds_count", kind="query") >= 1
    assert re.search(r"^ondata_ingest_failures_total ", metrics, re.M)
    # the app's job queue reports its depth at each scrape: nothing is waiting
    assert re.search(r"^ondata_queue_depth 0\.0$", metrics, re.M)


def test_metrics_unmatched_paths_share_one_label(http: httpx.Client) -> None:
    for n in range(3):
        assert http.get(f"/no/such/path/{n}").status_code == 404
    metrics = http.get("/metrics").text
    assert "/no/such/path" not in metrics
    assert _sample(metrics, "ondata_http_requests_total", route="unmatched", status="404") >= 3


def test_request_id_is_echoed_or_generated(http: httpx.Client) -> None:
    given = http.get("/healthz", headers={"x-request-id": "abc-123.req"})
    assert given.headers["x-request-id"] == "abc-123.req"
    made = http.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    unsafe = http.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    errors = http.post("/v1/search", json={}, headers={"x-request-id": "err-1"})
    assert errors.status_code == 400
    assert errors.headers["x-request-id"] == "err-1"


def test_access_log_is_one_json_line_with_the_request_id(
    http: httpx.Client, access_log: io.StringIO
) -> None:
    http.post(
        "/v1/search",
        json={"index_name": INDEX, "query": QUESTION},
        headers={"x-request-id": "trace-42"},
    )
    entries = [json.loads(line) for line in access_log.getvalue().splitlines()]
    entry = next(e for e in entries if e.get("request_id") == "trace-42")
    assert entry["route"] == "/v1/search"
    assert entry["status"] == 200
    assert entry["duration_ms"] > 0
    assert entry["subject"] == "anonymous"
    assert entry["level"] == "INFO"


def test_server_timing_on_a_chat_answer(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat())
    assert response.status_code == 200
    phases = dict(TIMING.findall(response.headers["server-timing"]))
    assert set(phases) == {"retrieve", "generate"}
    assert float(phases["retrieve"]) > 0


def test_server_timing_on_a_streamed_chat_answer(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as response:
        assert response.status_code == 200
        header = response.headers["server-timing"]
        response.read()
    assert set(dict(TIMING.findall(header))) == {"retrieve", "generate"}
    assert 'desc="to first content"' in header


def test_no_server_timing_without_timed_phases(http: httpx.Client) -> None:
    assert "server-timing" not in http.get("/healthz").headers


def test_server_timing_formats_phases_in_milliseconds() -> None:
    timings = Timings(started=0.0)
    timings.add("retrieve", 1.0, 0.0125)
    timings.add("generate", 1.0125, 0.5)
    assert server_timing(timings, now=9.0) == "retrieve;dur=12.5, generate;dur=500.0"
    streamed = Timings(started=0.0)
    streamed.add("retrieve", 1.0, 0.25)
    assert server_timing(streamed, now=2.0) == (
        'retrieve;dur=250.0, generate;dur=750.0;desc="to first content"'
    )
    assert server_timing(Timings(), now=1.0) is None


@pytest.mark.parametrize(
    ("given", "kept"),
    [(b"abc", True), (b"a" * 128, True), (b"a" * 129, False), (b"x y", False), (b"", False)],
)
def test_request_id_from_keeps_only_sane_ids(given: bytes, kept: bool) -> None:
    found = request_id_from({"headers": [(b"x-request-id", given)]})
    assert (found == given.decode()) is kept


def test_json_formatter_carries_the_request_id_extras_and_exceptions() -> None:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.route = "/v1/x"
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello you"
    assert entry["request_id"] == "rid-1"
    assert entry["route"] == "/v1/x"
    assert entry["level"] == "WARNING"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failing = logging.LogRecord("t", logging.ERROR, __file__, 1, "x", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failing))["exc"]


def test_metrics_label_static_files_by_their_mount(http: httpx.Client) -> None:
    from api.routes.playground import STATIC_PATH

    assert http.get(f"{STATIC_PATH}/app.css").status_code == 200
    metrics = http.get("/metrics").text
    assert _sample(metrics, "ondata_http_requests_total", route=f"{STATIC_PATH}/*") >= 1
    assert "app.css" not in metrics
