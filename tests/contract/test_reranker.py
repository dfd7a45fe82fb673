"""One contract every Reranker passes (RemoteReranker on a loopback fake, LocalReranker on a
tiny cross-encoder saved by the test), then what is particular to each adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.errors import (
    RerankerError,
    RerankerModelError,
    RerankerRateLimitError,
    RerankerTimeoutError,
)
from core.settings import RerankSettings
from retrieval.rerank import LocalReranker, RemoteReranker, Reranker, make_reranker
from tests.fakes.rerank_server import RERANK_MODEL, FakeRerankServer, overlap_score
from tests.support.tiny_reranker import direct_scores

QUERY = "when are tax returns due"
DOCUMENTS = [
    "Cats sleep for most of the day in warm, quiet places.",
    "Tax returns are due in April; late returns incur penalties.",
    "Employees accrue twenty-five days of paid vacation each year.",
    "When tax is due depends on the return you file.",
    "x",
]
Expected = Callable[[str, list[str]], list[float]]


class RerankerContract:
    """Subclasses provide `reranker` and `expected` (the scores the backend must give)."""

    async def test_rerank_scores_every_document_in_input_order(
        self, reranker: Reranker, expected: Expected
    ) -> None:
        scores = await reranker.rerank(QUERY, DOCUMENTS)
        assert scores == pytest.approx(expected(QUERY, DOCUMENTS), abs=1e-5)
        assert len(set(scores)) > 1
        backward = await reranker.rerank(QUERY, DOCUMENTS[::-1])
        assert backward == pytest.approx(scores[::-1], abs=1e-5)

    async def test_rerank_scores_are_relevances_between_0_and_1(self, reranker: Reranker) -> None:
        scores = await reranker.rerank(QUERY, DOCUMENTS)
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)

    async def test_rerank_of_one_document_equals_its_score_in_a_batch(
        self, reranker: Reranker
    ) -> None:
        batch = await reranker.rerank(QUERY, DOCUMENTS)
        singles = [(await reranker.rerank(QUERY, [d]))[0] for d in DOCUMENTS]
        assert singles == pytest.approx(batch, abs=1e-5)

    async def test_rerank_of_no_documents_is_empty(self, reranker: Reranker) -> None:
        assert await reranker.rerank(QUERY, []) == []

    async def test_reranker_has_a_name(self, reranker: Reranker) -> None:
        assert reranker.name


class TestRemoteReranker(RerankerContract):
    @pytest.fixture
    async def reranker(self, rerank_fake: FakeRerankServer) -> AsyncIterator[RemoteReranker]:
        remote = _remote(rerank_fake.settings())
        yield remote
        await remote.aclose()

    @pytest.fixture
    def expected(self) -> Expected:
        return lambda query, documents: [overlap_score(query, d) for d in documents]

    async def test_remote_sends_the_cohere_request(
        self, reranker: RemoteReranker, rerank_fake: FakeRerankServer
    ) -> None:
        await reranker.rerank(QUERY, DOCUMENTS)
        sent = rerank_fake.last_request
        assert sent.path == "/rerank"
        assert sent.body == {
            "model": RERANK_MODEL,
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 5,
        }

    async def test_remote_sends_the_api_key_and_honours_a_base_path(
        self, rerank_fake: FakeRerankServer
    ) -> None:
        settings = rerank_fake.settings().model_copy(
            update={"base_url": rerank_fake.base_url + "/v1", "api_key": "secret-key"}
        )
        remote = _remote(RerankSettings.model_validate(settings.model_dump()))
        try:
            await remote.rerank(QUERY, DOCUMENTS[:2])
        finally:
            await remote.aclose()
        assert rerank_fake.last_request.path == "/v1/rerank"
        assert rerank_fake.last_request.headers["authorization"] == "Bearer secret-key"

    async def test_remote_speaks_tei(self, rerank_fake: FakeRerankServer) -> None:
        remote = _remote(rerank_fake.settings().model_copy(update={"api": "tei"}))
        try:
            scores = await remote.rerank(QUERY, DOCUMENTS)
        finally:
            await remote.aclose()
        assert set(rerank_fake.last_request.body) == {"query", "texts", "truncate"}
        assert scores == pytest.approx([overlap_score(QUERY, d) for d in DOCUMENTS])

    async def test_remote_retries_429_after_retry_after(
        self, reranker: RemoteReranker, rerank_fake: FakeRerankServer
    ) -> None:
        rerank_fake.script(status=429, times=2, retry_after=0.05)
        scores = await reranker.rerank(QUERY, DOCUMENTS)
        assert len(rerank_fake.requests) == 3
        assert scores[1] == max(scores)

    async def test_remote_gives_up_on_429_with_retry_after(
        self, reranker: RemoteReranker, rerank_fake: FakeRerankServer
    ) -> None:
        rerank_fake.script(status=429, times=3, retry_after=0.05)
        with pytest.raises(RerankerRateLimitError) as raised:
            await reranker.rerank(QUERY, DOCUMENTS)
        assert raised.value.retry_after == pytest.approx(0.05)
        assert raised.value.status_code == 429
        assert len(rerank_fake.requests) == 3

    async def test_remote_does_not_wait_out_a_retry_after_beyond_its_timeout(
        self, rerank_fake: FakeRerankServer
    ) -> None:
        rerank_fake.script(status=429, retry_after=120)
        remote = _remote(rerank_fake.settings(timeout_s=5))
        try:
            with pytest.raises(RerankerRateLimitError) as raised:
                await remote.rerank(QUERY, DOCUMENTS)
        finally:
            await remote.aclose()
        assert raised.value.retry_after == 120
        assert len(rerank_fake.requests) == 1

    async def test_remote_retries_500_then_fails_with_502(
        self, reranker: RemoteReranker, rerank_fake: FakeRerankServer
    ) -> None:
        rerank_fake.script(status=500, times=3)
        with pytest.raises(RerankerError) as raised:
            await reranker.rerank(QUERY, DOCUMENTS)
        assert raised.value.status_code == 502
        assert "HTTP 500" in raised.value.message
        assert len(rerank_fake.requests) == 3

    async def test_remote_does_not_retry_a_400(
        self, reranker: RemoteReranker, rerank_fake: FakeRerankServer
    ) -> None:
        rerank_fake.script(status=400)
        with pytest.raises(RerankerError, match="HTTP 400"):
            await reranker.rerank(QUERY, DOCUMENTS)
        assert len(rerank_fake.requests) == 1

    async def test_remote_times_out_with_504(self, rerank_fake: FakeRerankServer) -> None:
        rerank_fake.script(delay_s=2, times=2)
        remote = _remote(rerank_fake.settings(timeout_s=0.3, max_retries=1))
        try:
            with pytest.raises(RerankerTimeoutError) as raised:
                await remote.rerank(QUERY, DOCUMENTS)
        finally:
            await remote.aclose()
        assert raised.value.status_code == 504
        assert len(rerank_fake.requests) == 2

    async def test_remote_unreachable_is_a_502(self) -> None:
        settings = RerankSettings(backend="remote", base_url="http://127.0.0.1:9", max_retries=0)
        remote = _remote(settings)
        try:
            with pytest.raises(RerankerError, match="could not be reached") as raised:
                await remote.rerank(QUERY, DOCUMENTS)
        finally:
            await remote.aclose()
        assert raised.value.status_code == 502


@pytest.fixture(scope="module", params=["torch", "onnx"])
def local(
    request: pytest.FixtureRequest,
    tiny_reranker_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> LocalReranker:
    # batches of 2: every call in the contract spans several of them
    loaded = LocalReranker.load(
        tiny_reranker_dir,
        batch_size=2,
        runtime=request.param,
        export_dir=tmp_path_factory.mktemp("rerank-onnx"),
    )
    assert loaded.runtime == request.param
    return loaded


class TestLocalReranker(RerankerContract):
    @pytest.fixture
    def reranker(self, local: LocalReranker) -> LocalReranker:
        return local

    @pytest.fixture
    def expected(self, tiny_reranker_dir: Path) -> Expected:
        return lambda query, documents: direct_scores(tiny_reranker_dir, query, documents)

    async def test_local_loads_from_settings_and_names_the_directory(
        self, tiny_reranker_dir: Path
    ) -> None:
        loaded = make_reranker(RerankSettings(backend="local", path=tiny_reranker_dir))
        assert isinstance(loaded, LocalReranker)
        assert loaded.name == tiny_reranker_dir.name

    def test_local_onnx_export_is_made_once_and_reused(
        self, tiny_reranker_dir: Path, tmp_path: Path
    ) -> None:
        first = LocalReranker.load(tiny_reranker_dir, runtime="onnx", export_dir=tmp_path)
        model = tmp_path / "cross-encoder.onnx"
        made = model.stat().st_mtime_ns
        again = LocalReranker.load(tiny_reranker_dir, runtime="onnx", export_dir=tmp_path)
        assert model.stat().st_mtime_ns == made
        assert again.score(QUERY, DOCUMENTS) == pytest.approx(first.score(QUERY, DOCUMENTS))

    def test_local_onnx_refuses_a_model_that_does_not_export_and_auto_falls_back(
        self, tiny_reranker_dir: Path, tmp_path: Path
    ) -> None:
        # a file where the export directory should be: the export cannot be written
        blocked = tmp_path / "blocked"
        blocked.write_text("")
        with pytest.raises(RerankerModelError, match="ONNX"):
            LocalReranker.load(tiny_reranker_dir, runtime="onnx", export_dir=blocked / "x")
        auto = LocalReranker.load(tiny_reranker_dir, runtime="auto", export_dir=blocked / "x")
        assert auto.runtime == "torch"

    def test_local_refuses_a_directory_without_a_model(self, tmp_path: Path) -> None:
        with pytest.raises(RerankerModelError, match="not a model directory"):
            LocalReranker.load(tmp_path)


def test_no_reranker_when_the_backend_is_none() -> None:
    assert make_reranker(RerankSettings()) is None


@pytest.mark.parametrize(
    ("settings", "missing"),
    [({"backend": "remote"}, "BASE_URL"), ({"backend": "local"}, "PATH")],
)
def test_rerank_settings_say_what_to_set(settings: dict[str, str], missing: str) -> None:
    with pytest.raises(ValueError, match=f"ONDATA_RERANK__{missing}"):
        RerankSettings.model_validate(settings)


def _remote(settings: RerankSettings) -> RemoteReranker:
    """The adapter for these settings, its retries waiting milliseconds rather than seconds."""
    return RemoteReranker.from_settings(settings, backoff_s=0.01)
