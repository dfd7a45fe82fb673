"""OndataRetriever against a live server: the real app under uvicorn on loopback, a real index,
llama-index's RetrieverQueryEngine answering with the loopback fake chat model."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from openai import OpenAI

from api.app import create_app
from core.db import make_engine
from core.errors import AuthenticationError, IndexNotFoundError, PermissionDeniedError
from core.keys import KeyStore
from core.settings import Settings
from ingest.service import open_pipeline
from ingest.sources import document_from_record
from retrieval.llama_index import OndataRetriever
from tests.fakes.openai_server import CHAT_MODEL, FakeOpenAIServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"
SALARY = "Salary bands for engineers are reviewed every March by the HR team."


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    finance_key: str
    other_index_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("llama_retriever")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    with open_pipeline(settings, INDEX) as pipeline:
        hr = document_from_record("salaries", title="Salaries", text=SALARY)
        pipeline.ingest_documents([hr.model_copy(update={"acl_groups": ("hr",)})])
    engine = make_engine(settings.resolved_database_url)
    keys = KeyStore(engine)
    admin = keys.create(role="admin").key
    finance = keys.create(role="reader", groups=["finance"]).key
    elsewhere = keys.create(role="reader", groups=None, indexes=["elsewhere"]).key
    engine.dispose()
    with serve_in_thread(create_app(settings)) as url:
        yield Server(url, admin, finance, elsewhere)


class FakeChatLLM(CustomLLM):
    """llama-index's extension point for a custom model, over the official openai client
    talking to the loopback fake (llama-index-llms-openai would pin openai<3)."""

    base_url: str
    api_key: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=CHAT_MODEL, context_window=8192, num_output=256)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        client = OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0)
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}]
        )
        return CompletionResponse(text=reply.choices[0].message.content or "")

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield self.complete(prompt, formatted, **kwargs)


class DocMarkers(BaseNodePostprocessor):
    """Numbers the sources [doc1]..[docN] in the prompt, as ondata's own prompt does."""

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=n.node.model_copy(update={"text": f"[doc{i}] {n.node.get_content()}"}),
                score=n.score,
            )
            for i, n in enumerate(nodes, start=1)
        ]


def cited(answer: str, sources: Sequence[NodeWithScore]) -> list[dict[str, Any]]:
    """The source nodes' metadata for each [docN] in the answer."""
    return [sources[int(n) - 1].node.metadata for n in re.findall(r"\[doc(\d+)\]", answer)]


def retriever(server: Server, **kwargs: Any) -> OndataRetriever:
    options: dict[str, Any] = {"url": server.url, "index_name": INDEX, "api_key": server.admin_key}
    return OndataRetriever(**(options | kwargs))


def test_retriever_returns_nodes_with_citation_metadata(server: Server) -> None:
    nodes = retriever(server, top_k=3).retrieve(QUESTION)
    assert 1 <= len(nodes) <= 3
    best = nodes[0]
    assert isinstance(best.node, TextNode)
    assert "180 euros" in best.node.get_content()
    meta = best.node.metadata
    assert best.node.node_id == meta["chunk_id"]
    assert meta["title"] == "Travel policy"
    assert meta["filepath"] == "travel.md"
    assert meta["doc_id"].startswith("travel")
    assert {"url", "page"} <= set(meta)
    assert best.score is not None
    assert best.score >= (nodes[-1].score or 0.0)


def test_retriever_modes_and_filter_reach_the_server(server: Server) -> None:
    keyword = retriever(server, mode="keyword", top_k=5).retrieve("red badge visitors")
    assert keyword[0].node.metadata["title"] == "Security"
    only = retriever(server, filter={"title": ["Security"]}, strictness=1).retrieve(QUESTION)
    assert only
    assert {n.node.metadata["title"] for n in only} == {"Security"}
    odata = retriever(server, filter="title eq 'Travel policy'", strictness=1).retrieve("badges")
    assert {n.node.metadata["title"] for n in odata} == {"Travel policy"}


def test_retriever_reads_only_what_the_key_may(server: Server) -> None:
    admin = retriever(server, strictness=1).retrieve("salary bands engineers")
    assert "Salaries" in {n.node.metadata["title"] for n in admin}
    finance = retriever(server, api_key=server.finance_key, strictness=1)
    assert "Salaries" not in {n.node.metadata["title"] for n in finance.retrieve("salary bands")}


def test_retriever_errors_are_ondata_errors(server: Server) -> None:
    with pytest.raises(AuthenticationError, match="API key"):
        retriever(server, api_key="od_wrong").retrieve(QUESTION)
    with pytest.raises(PermissionDeniedError, match=INDEX):
        retriever(server, api_key=server.other_index_key).retrieve(QUESTION)
    with pytest.raises(IndexNotFoundError, match="nowhere"):
        retriever(server, index_name="nowhere").retrieve(QUESTION)


def test_query_engine_answers_with_citations_from_source_nodes(
    server: Server, openai_fake: FakeOpenAIServer
) -> None:
    llm = FakeChatLLM(base_url=openai_fake.base_url, api_key=openai_fake.api_key or "")
    engine = RetrieverQueryEngine.from_args(
        retriever(server, top_k=2), llm=llm, node_postprocessors=[DocMarkers()]
    )
    response = engine.query(QUESTION)
    answer = str(response)
    assert "180 euros" in answer
    sources = cited(answer, response.source_nodes)
    assert sources
    assert sources[0]["title"] == "Travel policy"
    assert QUESTION in openai_fake.last_request.body["messages"][0]["content"]


async def test_async_retrieve_and_query(server: Server, openai_fake: FakeOpenAIServer) -> None:
    nodes = await retriever(server).aretrieve(QUESTION)
    assert nodes[0].node.metadata["title"] == "Travel policy"
    llm = FakeChatLLM(base_url=openai_fake.base_url, api_key=openai_fake.api_key or "")
    engine = RetrieverQueryEngine.from_args(
        retriever(server), llm=llm, node_postprocessors=[DocMarkers()]
    )
    response = await engine.aquery(QUESTION)
    assert cited(str(response), response.source_nodes)[0]["doc_id"].startswith("travel")
    with pytest.raises(IndexNotFoundError):
        await retriever(server, index_name="nowhere").aretrieve(QUESTION)
