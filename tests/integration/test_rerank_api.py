"""OYD's semantic query types end to end: the real app over HTTP with each reranker (remote: the
loopback fake rerank server; local: a tiny cross-encoder saved by the test), and without one
(the documented fallback to vector_simple_hybrid, announced in X-Ondata-Fallback).

Chat goes through the official openai clients (plain, streaming, the Azure deployment path);
the answering model is the loopback OpenAI-compatible fake.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from openai import AzureOpenAI, OpenAI
from pydantic import SecretStr
from typer.testing import CliRunner

from api.app import create_app
from api.convert import FALLBACK_HEADER
from core.settings import ApiSettings, RerankSettings, Settings
from retrieval.cli import register as register_search
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.rerank_server import FakeRerankServer, overlap_score
from tests.integration.api_support import INDEX, build_index, serve_in_thread
from tests.integration.eval_support import eval_cli, run_eval

API_KEY = "sk-ondata-test"
QUESTION = "How much may employees spend on hotels in capital cities?"
BACKENDS = ("remote", "local")
SMOKE = Path(__file__).resolve().parents[2] / "data" / "eval" / "smoke"


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the handbook index, copied by each app below."""
    root = tmp_path_factory.mktemp("rerank_seed")
    build_index(Settings(data_dir=root / "ondata"), root / "docs")
    return root / "ondata"


def _rerank_settings(backend: str, fake: FakeRerankServer, model_dir: Path) -> RerankSettings:
    if backend == "remote":
        return fake.settings(max_retries=0)
    if backend == "local":
        return RerankSettings(backend="local", path=model_dir)
    return RerankSettings()


@pytest.fixture(scope="module", params=[*BACKENDS, "none"])
def app(
    request: pytest.FixtureRequest,
    seed: Path,
    tmp_path_factory: pytest.TempPathFactory,
    openai_fake_server: FakeOpenAIServer,
    rerank_fake_server: FakeRerankServer,
    tiny_reranker_dir: Path,
) -> Iterator[tuple[str, str]]:
    """(backend, base URL) of the real app with that reranker."""
    data = tmp_path_factory.mktemp(f"rerank_{request.param}") / "ondata"
    shutil.copytree(seed, data)
    settings = Settings(
        data_dir=data,
        chat=openai_fake_server.chat_settings(),
        api=ApiSettings(api_key=SecretStr(API_KEY)),
        rerank=_rerank_settings(request.param, rerank_fake_server, tiny_reranker_dir),
    )
    with serve_in_thread(create_app(settings)) as url:
        yield request.param, url


@pytest.fixture
def http(app: tuple[str, str], rerank_fake: FakeRerankServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=app[1], timeout=60, headers=headers) as client:
        yield client


@pytest.fixture
def client(app: tuple[str, str], rerank_fake: FakeRerankServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{app[1]}/v1", api_key=API_KEY, max_retries=0) as c:
        yield c


def _sources(query_type: str, **parameters: Any) -> dict[str, Any]:
    parameters = {
        "index_name": INDEX,
        "query_type": query_type,
        "strictness": 1,
        "include_contexts": ["citations", "intent", "all_retrieved_documents"],
        **parameters,
    }
    return {"data_sources": [{"type": "ondata", "parameters": parameters}]}


def _check_reranked(backend: str, documents: list[dict[str, Any]]) -> None:
    """Reranked (scores 0..1, best first among the kept), or plainly not (no rerank_score)."""
    scores = [d.get("rerank_score") for d in documents]
    if backend == "none":
        assert scores == [None] * len(documents)
        return
    assert documents
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores), scores
    kept = [d["rerank_score"] for d in documents if d.get("filter_reason") != "score"]
    assert kept == sorted(kept, reverse=True)


def _check_fallback(backend: str, headers: Mapping[str, str]) -> None:
    if backend == "none":
        assert headers[FALLBACK_HEADER].startswith("query_type=vector_simple_hybrid;")
        assert "rerank" not in headers.get("server-timing", "")
    else:
        assert FALLBACK_HEADER not in headers
        assert "rerank;dur=" in headers["server-timing"]


@pytest.mark.parametrize("query_type", ["semantic", "vector_semantic_hybrid"])
def test_search_reranks_semantic_query_types(
    app: tuple[str, str], http: httpx.Client, rerank_fake: FakeRerankServer, query_type: str
) -> None:
    backend = app[0]
    body = {"index_name": INDEX, "query": QUESTION, "query_type": query_type, "strictness": 1}
    response = http.post("/v1/search", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    _check_reranked(backend, results)
    _check_fallback(backend, response.headers)
    assert results[0]["content"]
    if backend == "remote":
        sent = rerank_fake.last_request.body
        assert sent["query"] == QUESTION
        assert results[0]["rerank_score"] == max(
            overlap_score(QUESTION, d) for d in sent["documents"]
        )
    if backend == "none":
        hybrid = http.post("/v1/search", json=body | {"query_type": "vector_simple_hybrid"})
        assert [r["chunk_id"] for r in results] == [r["chunk_id"] for r in hybrid.json()["results"]]
        assert FALLBACK_HEADER not in hybrid.headers


def test_search_without_semantic_query_type_has_no_rerank_score(http: httpx.Client) -> None:
    body = {"index_name": INDEX, "query": QUESTION, "query_type": "vector_simple_hybrid"}
    response = http.post("/v1/search", json=body)
    assert response.status_code == 200
    assert all(r["rerank_score"] is None for r in response.json()["results"])
    assert FALLBACK_HEADER not in response.headers


def test_chat_reranks_with_semantic(app: tuple[str, str], client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="ignored",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body=_sources("semantic"),
    )
    completion = raw.parse()
    context = (completion.choices[0].message.model_extra or {})["context"]
    _check_reranked(app[0], context["all_retrieved_documents"])
    _check_fallback(app[0], raw.headers)
    assert completion.choices[0].message.content


def test_streamed_chat_reranks_with_vector_semantic_hybrid(
    app: tuple[str, str], client: OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="ignored",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body=_sources("vector_semantic_hybrid"),
    ) as response:
        headers = response.headers
        chunks = list(response.parse())
    contexts = [(c.choices[0].delta.model_extra or {}).get("context") for c in chunks if c.choices]
    context = next(c for c in contexts if c)
    _check_reranked(app[0], context["all_retrieved_documents"])
    _check_fallback(app[0], headers)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_azure_path_reranks(app: tuple[str, str]) -> None:
    azure = AzureOpenAI(
        azure_endpoint=app[1], api_key=API_KEY, api_version="2024-10-21", max_retries=0
    )
    with azure:
        raw = azure.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body=_sources("vector_semantic_hybrid"),
        )
    context = (raw.parse().choices[0].message.model_extra or {})["context"]
    _check_reranked(app[0], context["all_retrieved_documents"])
    _check_fallback(app[0], raw.headers)


def test_strictness_cuts_on_the_rerank_score(app: tuple[str, str], http: httpx.Client) -> None:
    if app[0] != "remote":
        pytest.skip("the fake's overlap scores spread far enough to cut; random weights do not")
    body = {"index_name": INDEX, "query": QUESTION, "query_type": "semantic", "top_n_documents": 20}
    loose = http.post("/v1/search", json=body | {"strictness": 1}).json()["results"]
    strict = http.post("/v1/search", json=body | {"strictness": 5}).json()["results"]
    assert all(r["rerank_score"] >= 0.5 for r in strict)
    assert 0 < len(strict) < len(loose)


def test_reranker_failures_are_upstream_errors(
    app: tuple[str, str], http: httpx.Client, rerank_fake: FakeRerankServer
) -> None:
    if app[0] != "remote":
        pytest.skip("only the remote reranker can fail upstream")
    body = {"index_name": INDEX, "query": QUESTION, "query_type": "semantic"}
    rerank_fake.script(status=500)
    failed = http.post("/v1/search", json=body)
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "reranker_failed"
    rerank_fake.script(status=429, retry_after=7)
    limited = http.post("/v1/search", json=body)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"


def test_search_capabilities_say_which_query_types_rerank(
    app: tuple[str, str], http: httpx.Client
) -> None:
    response = http.get("/v1/search/capabilities")
    assert response.status_code == 200
    body = response.json()
    semantic = {"semantic", "vector_semantic_hybrid"}
    if app[0] == "none":
        assert body["reranker"] is None
        assert semantic.isdisjoint(body["query_types"])
    else:
        assert body["reranker"]
        assert semantic <= set(body["query_types"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_retrieval_measures_the_semantic_modes(
    backend: str,
    tmp_path: Path,
    rerank_fake: FakeRerankServer,
    tiny_reranker_dir: Path,
) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path / "data"), "ONDATA_RERANK__BACKEND": backend}
    if backend == "remote":
        env["ONDATA_RERANK__BASE_URL"] = rerank_fake.base_url
    else:
        env["ONDATA_RERANK__PATH"] = str(tiny_reranker_dir)
    modes = "keyword,semantic,vector_semantic_hybrid"
    code, line = run_eval("retrieval", env, "--dataset", str(SMOKE), "--modes", modes)
    assert code == 0, line
    assert set(line["modes"]) == {"keyword", "semantic", "vector_semantic_hybrid"}
    for values in line["modes"].values():
        assert 0.0 <= values["ndcg@10"] <= 1.0
    if backend == "remote":
        assert len(rerank_fake.requests) == 2 * line["queries"]
        # word overlap is a fair reranker on the smoke set
        assert line["modes"]["semantic"]["ndcg@10"] >= 0.5


def test_eval_retrieval_refuses_semantic_modes_without_a_reranker(tmp_path: Path) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path / "data")}
    result = eval_cli(["eval", "retrieval", "--dataset", str(SMOKE), "--modes", "semantic"], env)
    assert result.exit_code == 1
    assert "ONDATA_RERANK__BACKEND" in result.output
    assert not (tmp_path / "data").exists()  # refused before indexing anything


def _search_cli(data: Path, *argv: str, **env: str) -> tuple[int, str]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """ondata (test root)."""

    register_search(app)
    result = CliRunner().invoke(
        app,
        ["search", *argv, "--index", INDEX, "--json"],
        env={"ONDATA_DATA_DIR": str(data), **env},
    )
    return result.exit_code, result.output


def test_search_cli_takes_the_semantic_query_types(
    seed: Path, tmp_path: Path, rerank_fake: FakeRerankServer
) -> None:
    data = tmp_path / "ondata"
    shutil.copytree(seed, data)
    remote = {"ONDATA_RERANK__BACKEND": "remote", "ONDATA_RERANK__BASE_URL": rerank_fake.base_url}
    code, output = _search_cli(data, QUESTION, "--mode", "semantic", "--strictness", "1", **remote)
    assert code == 0, output
    results = json.loads(output.splitlines()[-1])["results"]
    assert results
    assert results[0]["rerank_score"] == max(r["rerank_score"] for r in results)
    assert rerank_fake.last_request.body["query"] == QUESTION
    code, output = _search_cli(data, QUESTION, "--mode", "vector_semantic_hybrid")
    assert code == 0, output
    assert "no reranker configured, so vector_semantic_hybrid ran as hybrid" in output
    assert all(r["rerank_score"] is None for r in json.loads(output.splitlines()[-1])["results"])
