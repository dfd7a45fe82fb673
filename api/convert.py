"""Pure conversions between the wire models (api.schemas) and the retrieval layer's types.

query_type -> search mode (we always have dense and BM25 vectors, so no embedding_dependency
is needed, and there is no separate semantic ranker):

=======================  =========  ==================================================
OYD query_type           mode       why
=======================  =========  ==================================================
simple                   keyword    BM25 only, like Azure's simple (keyword) search
vector                   vector     dense vectors only
vector_simple_hybrid     hybrid     dense + BM25 fused inside Qdrant
semantic                 hybrid     Azure's semantic ranker reranks keyword hits by
                                    meaning; the closest we have is dense + BM25 fusion
vector_semantic_hybrid   hybrid     as above
(omitted)                hybrid     our best-measured mode (Azure's default is simple)
=======================  =========  ==================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from api.filters import parse_filter
from api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CitationOut,
    ContextPart,
    MessageContext,
    QueryType,
    RequestMessage,
    ResponseMessage,
    RetrievedDocumentOut,
    SearchRequestBody,
    SearchResponse,
    SearchResultOut,
    Usage,
)
from core.models import Answer, Citation, ScoredChunk
from retrieval.answer import AnswerRequest
from retrieval.chat import ChatMessage, ChatParams, ChatResult, Role
from retrieval.citations import citation_of
from retrieval.index import SearchMode
from retrieval.search import SearchRequest, SearchResult

QUERY_TYPE_MODES: dict[QueryType, SearchMode] = {
    "simple": "keyword",
    "vector": "vector",
    "vector_simple_hybrid": "hybrid",
    "semantic": "hybrid",
    "vector_semantic_hybrid": "hybrid",
}
DEFAULT_MODE: SearchMode = "hybrid"
FILTER_PARAM = "data_sources.0.parameters.filter"


def search_mode(query_type: QueryType | None) -> SearchMode:
    return DEFAULT_MODE if query_type is None else QUERY_TYPE_MODES[query_type]


def chat_messages(messages: Sequence[RequestMessage]) -> tuple[ChatMessage, ...]:
    """Our conversation turns; OpenAI's `developer` role is a system turn."""
    return tuple(ChatMessage(role=_role(m), content=m.text()) for m in messages)


def _role(message: RequestMessage) -> Role:
    return "system" if message.role == "developer" else message.role


def chat_params(body: ChatCompletionRequest) -> ChatParams:
    return ChatParams(
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.response_token_limit(),
        stop=body.stop_sequences(),
        user=body.user,
    )


def answer_request(body: ChatCompletionRequest) -> AnswerRequest:
    """The grounded request behind a chat completion that names a data source."""
    assert body.data_sources, "answer_request needs data_sources"
    p = body.data_sources[0].parameters
    return AnswerRequest(
        messages=chat_messages(body.messages),
        index_name=p.index_name,
        top_n_documents=p.top_n_documents,
        strictness=p.strictness,
        in_scope=p.in_scope,
        role_information=p.role_information,
        mode=search_mode(p.query_type),
        filter=parse_filter(p.filter, param=FILTER_PARAM),
        max_search_queries=p.max_search_queries,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.response_token_limit(),
        stop=body.stop_sequences(),
        user=body.user,
        include_all_retrieved="all_retrieved_documents" in p.include_contexts,
    )


def included_contexts(body: ChatCompletionRequest) -> frozenset[ContextPart]:
    assert body.data_sources
    return frozenset(body.data_sources[0].parameters.include_contexts)


def citation_out(citation: Citation) -> CitationOut:
    return CitationOut(**citation.model_dump())


def retrieved_out(scored: ScoredChunk, queries: Sequence[str]) -> RetrievedDocumentOut:
    return RetrievedDocumentOut(
        **citation_of(scored).model_dump(),
        search_queries=list(queries),
        original_search_score=scored.original_search_score,
        rerank_score=scored.rerank_score,
        filter_reason=scored.filter_reason,
    )


def message_context(
    *,
    citations: Iterable[Citation],
    intent: Sequence[str],
    all_retrieved: Iterable[ScoredChunk],
    include: frozenset[ContextPart],
) -> MessageContext:
    """OYD's message.context holding what the caller asked for in include_contexts."""
    return MessageContext(
        citations=[citation_out(c) for c in citations] if "citations" in include else None,
        intent=json.dumps(list(intent)) if "intent" in include else None,
        all_retrieved_documents=(
            [retrieved_out(d, intent) for d in all_retrieved]
            if "all_retrieved_documents" in include
            else None
        ),
    )


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def grounded_completion(
    answer: Answer, *, include: frozenset[ContextPart], id_: str, created: int
) -> ChatCompletion:
    """A chat.completion carrying the verified answer and its OYD context."""
    context = message_context(
        citations=answer.citations,
        intent=answer.intent,
        all_retrieved=answer.all_retrieved,
        include=include,
    )
    message = ResponseMessage(content=answer.content, context=context)
    return ChatCompletion(
        id=id_,
        created=created,
        model=answer.model,
        choices=[Choice(message=message)],
        usage=usage(answer.prompt_tokens, answer.completion_tokens),
    )


def plain_completion(result: ChatResult, *, id_: str, created: int) -> ChatCompletion:
    """A chat.completion for a request passed straight to the chat model."""
    return ChatCompletion(
        id=id_,
        created=created,
        model=result.model,
        choices=[
            Choice(
                message=ResponseMessage(content=result.content),
                finish_reason=result.finish_reason,
            )
        ],
        usage=usage(result.prompt_tokens, result.completion_tokens),
    )


def search_request(body: SearchRequestBody) -> SearchRequest:
    return SearchRequest(
        queries=(body.query,),
        index_name=body.index_name,
        mode=search_mode(body.query_type),
        top_n_documents=body.top_n_documents,
        strictness=body.strictness,
        filter=parse_filter(body.filter, param="filter"),
    )


def search_response(result: SearchResult) -> SearchResponse:
    return SearchResponse(
        results=[_search_result(d) for d in result.documents],
        search_queries=list(result.queries),
    )


def _search_result(scored: ScoredChunk) -> SearchResultOut:
    return SearchResultOut(
        **citation_of(scored).model_dump(),
        section=scored.chunk.section,
        metadata=scored.chunk.metadata,
        score=scored.score,
        original_search_score=scored.original_search_score,
    )
