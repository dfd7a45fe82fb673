"""Pure conversions between the wire models (api.schemas) and the retrieval layer's types.

query_type -> search mode and reranking (retrieval.search.QUERY_TYPES; we always have dense
and BM25 vectors, so no embedding_dependency is needed):

=======================  =========  ======  ===========================================
OYD query_type           mode       rerank  why
=======================  =========  ======  ===========================================
simple                   keyword    no      BM25 only, like Azure's simple search
vector                   vector     no      dense vectors only
vector_simple_hybrid     hybrid     no      dense + BM25 fused inside Qdrant
semantic                 keyword    yes     Azure's semantic ranker reranks keyword hits
vector_semantic_hybrid   hybrid     yes     ... and hybrid hits
(omitted)                hybrid     no      our best-measured mode (Azure's default is simple)
=======================  =========  ======  ===========================================

Without a reranker (rerank.backend=none) the two semantic types run as vector_simple_hybrid
and the response carries the FALLBACK_HEADER saying so (`fallback_headers`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

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
from core.errors import UnsupportedParameterError
from core.models import Answer, Citation, ScoredChunk
from retrieval.answer import AnswerRequest
from retrieval.chat import ChatMessage, ChatParams, ChatResult, Role
from retrieval.citations import citation_of
from retrieval.index import SearchMode
from retrieval.rerank import Reranker
from retrieval.search import FALLBACK_MODE, QUERY_TYPES, SearchRequest, SearchResult

DEFAULT_MODE: SearchMode = "hybrid"
FILTER_PARAM = "data_sources.0.parameters.filter"
FALLBACK_HEADER = "X-Ondata-Fallback"
FALLBACK_QUERY_TYPE = next(t for t, (m, r) in QUERY_TYPES.items() if m == FALLBACK_MODE and not r)


def search_mode(query_type: QueryType | None) -> SearchMode:
    return DEFAULT_MODE if query_type is None else QUERY_TYPES[query_type][0]


def reranks(query_type: QueryType | None) -> bool:
    """Whether this query type reranks (semantic, vector_semantic_hybrid)."""
    return query_type is not None and QUERY_TYPES[query_type][1]


def fallback_headers(rerank: bool, *, reranker: Reranker | None) -> dict[str, str]:
    """The header telling the caller that a reranking (semantic) query type ran without a
    reranker, as FALLBACK_QUERY_TYPE; none when it reranked or did not ask to."""
    if reranker is not None or not rerank:
        return {}
    reason = "no reranker configured (rerank.backend=none)"
    return {FALLBACK_HEADER: f'query_type={FALLBACK_QUERY_TYPE}; reason="{reason}"'}


def chat_messages(messages: Sequence[RequestMessage]) -> tuple[ChatMessage, ...]:
    """Our conversation turns; OpenAI's `developer` role is a system turn."""
    return tuple(ChatMessage(role=_role(m), content=m.text()) for m in messages)


def _role(message: RequestMessage) -> Role:
    return "system" if message.role == "developer" else message.role


# Fields of the OpenAI request sent to a configured chat model as they are. The others are
# accepted and ignored: n (always 1), audio, modalities, logprobs, top_logprobs (replies are
# text only), parallel_tool_calls, tool_choice / function_call without tools,
# stream_options.include_obfuscation and Azure's user_security_context. The extractive
# answerer ignores all of them but max_tokens (see api/README.md).
MODEL_OPTIONS = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "metadata",
    "store",
    "service_tier",
    "reasoning_effort",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "moderation",
)
# ... and without data_sources these as well: they shape the whole reply, which a grounded
# answer fixes (text with [docN] markers).
PLAIN_MODEL_OPTIONS = (*MODEL_OPTIONS, "response_format", "prediction", "web_search_options")
# Azure "On Your Data" refuses tools or functions next to data_sources with this message
AZURE_FUNCTIONS_REFUSAL = "Functions are not supported for this API version or this model version."


def model_options(body: ChatCompletionRequest, names: Sequence[str]) -> dict[str, Any]:
    """The named request fields that were sent, for the chat model."""
    return {name: value for name in names if (value := getattr(body, name)) is not None}


def refuse_tools(body: ChatCompletionRequest) -> None:
    """Tools (or functions) the model may call: refused, since ondata relays text replies only.

    With data_sources it is Azure OYD's own refusal; tool_choice (function_call) "none"
    means the tools are not used, and they are then ignored, as Azure does.
    """
    for tools, choice, param in (
        (body.tools, body.tool_choice, "tools"),
        (body.functions, body.function_call, "functions"),
    ):
        if tools and choice != "none":
            reason = (
                "ondata answers from the index with text and citations"
                if body.data_sources
                else "ondata relays text replies only, not tool calls"
            )
            raise UnsupportedParameterError(
                f"{AZURE_FUNCTIONS_REFUSAL} ({param}: {reason}; drop {param} or send "
                f'{"tool_choice" if param == "tools" else "function_call"}: "none".)',
                param=param,
            )


def chat_params(body: ChatCompletionRequest) -> ChatParams:
    refuse_tools(body)
    return ChatParams(
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.response_token_limit(),
        stop=body.stop_sequences(),
        user=body.user,
        options=model_options(body, PLAIN_MODEL_OPTIONS),
    )


def answer_request(body: ChatCompletionRequest) -> AnswerRequest:
    """The grounded request behind a chat completion that names a data source."""
    assert body.data_sources, "answer_request needs data_sources"
    refuse_tools(body)
    p = body.data_sources[0].parameters
    return AnswerRequest(
        messages=chat_messages(body.messages),
        index_name=p.index_name,
        top_n_documents=p.top_n_documents,
        strictness=p.strictness,
        in_scope=p.in_scope,
        role_information=p.role_information,
        mode=search_mode(p.query_type),
        rerank=reranks(p.query_type),
        filter=parse_filter(p.filter, param=FILTER_PARAM),
        max_search_queries=p.max_search_queries,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.response_token_limit(),
        stop=body.stop_sequences(),
        user=body.user,
        include_all_retrieved="all_retrieved_documents" in p.include_contexts,
        options=model_options(body, MODEL_OPTIONS),
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
        rerank=reranks(body.query_type),
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
        rerank_score=scored.rerank_score,
    )
