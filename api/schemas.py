"""Wire models of the HTTP API: OpenAI chat completions plus Azure "On Your Data" data_sources.

Request models forbid unknown fields so a typo is a 400 that names it, not a silently
ignored option. Response models follow the OpenAI / Azure OYD shapes field for field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from retrieval.search import MAX_QUERIES, MAX_TOP_N

QueryType = Literal[
    "simple", "vector", "vector_simple_hybrid", "semantic", "vector_semantic_hybrid"
]
ContextPart = Literal["citations", "intent", "all_retrieved_documents"]


def _default_contexts() -> list[ContextPart]:
    return ["citations", "intent"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Request):
    """One text part of a message whose content is a list (OpenAI content parts)."""

    type: Literal["text"]
    text: str


class RequestMessage(_Request):
    """One conversation turn as the caller sends it.

    An assistant turn may carry back the ``context`` an earlier answer returned (OYD clients
    echo it); it is accepted and not used.
    """

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    context: dict[str, Any] | None = None
    refusal: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        if isinstance(content, list):
            types = [p.get("type") for p in content if isinstance(p, dict)]
            if not all(isinstance(t, str) for t in types):
                raise ValueError("each content part needs a string type, such as 'text'")
            kinds = set(types) - {"text"}
            if kinds:
                unsupported = ", ".join(sorted(map(str, kinds)))
                raise ValueError(f"only text content parts are supported, not {unsupported}")
        return content

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class DataSourceParameters(_Request):
    """OYD data source parameters, same spellings as Azure's `azure_search` source.

    endpoint, authentication, embedding_dependency, fields_mapping, semantic_configuration
    and index_language only make sense for Azure AI Search: accepted (so existing OYD
    requests work unchanged) and ignored.
    """

    index_name: str = Field(min_length=1, max_length=128)
    top_n_documents: int = Field(default=5, ge=1, le=MAX_TOP_N)
    strictness: int = Field(default=3, ge=1, le=5)
    in_scope: bool = True
    role_information: str | None = Field(default=None, max_length=4000)
    query_type: QueryType | None = None
    filter: str | None = Field(default=None, max_length=4000)
    include_contexts: list[ContextPart] = Field(default_factory=_default_contexts)
    max_search_queries: int | None = Field(default=None, ge=1, le=MAX_QUERIES)
    allow_partial_result: bool = False
    endpoint: str | None = None
    authentication: dict[str, Any] | None = None
    embedding_dependency: dict[str, Any] | None = None
    fields_mapping: dict[str, Any] | None = None
    semantic_configuration: str | None = None
    index_language: str | None = None


class DataSource(_Request):
    """One OYD data source: type `ondata` (or `azure_search` naming one of our indexes)."""

    type: Literal["ondata", "azure_search"]
    parameters: DataSourceParameters


class StreamOptions(_Request):
    include_usage: bool = False
    include_obfuscation: bool = False  # accepted; our chunks carry no obfuscation padding


class ChatCompletionRequest(_Request):
    """POST /v1/chat/completions: the OpenAI request plus OYD data_sources."""

    messages: list[RequestMessage] = Field(min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    n: int | None = None
    # The rest of OpenAI's request (openai-python's completion_create_params) and Azure's
    # user_security_context: api/convert.py says which reach the chat model and which are
    # ignored (api/README.md lists them); tools with data_sources are refused as Azure does.
    audio: dict[str, Any] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    function_call: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    moderation: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    prediction: dict[str, Any] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    safety_identifier: str | None = None
    seed: int | None = None
    service_tier: str | None = None
    store: bool | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    user_security_context: dict[str, Any] | None = None
    data_sources: list[DataSource] | None = None
    # ondata: store this exchange in that conversation (see api/history.py)
    conversation_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("n")
    @classmethod
    def _single_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences")
        return stop

    @field_validator("data_sources")
    @classmethod
    def _exactly_one_source(cls, sources: list[DataSource] | None) -> list[DataSource] | None:
        if sources is not None and len(sources) != 1:
            raise ValueError("exactly one data source is supported")
        return sources

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def response_token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class SearchRequestBody(_Request):
    """POST /v1/search: retrieval only."""

    index_name: str = Field(min_length=1, max_length=128)
    query: str = Field(min_length=1, max_length=8000)
    top_n_documents: int = Field(default=5, ge=1, le=MAX_TOP_N)
    strictness: int = Field(default=3, ge=1, le=5)
    query_type: QueryType | None = None
    filter: str | None = Field(default=None, max_length=4000)


# ---- responses ---------------------------------------------------------------------------


class CitationOut(BaseModel):
    """OYD citation, plus our doc_id and page: every key always present, null when unknown
    (clients index it, as Azure's samples do with ``citation["url"]``), even where the rest of
    a response leaves null fields out."""

    content: str
    title: str | None = None
    url: str | None = None
    filepath: str | None = None
    chunk_id: str
    doc_id: str
    page: int | None = None

    # no return annotation: one would replace this model's schema in OpenAPI with a bare dict
    @model_serializer(mode="wrap")
    def _every_key(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data: dict[str, Any] = handler(self)
        return {name: data.get(name) for name in type(self).model_fields} | data


class RetrievedDocumentOut(CitationOut):
    """OYD all_retrieved_documents entry."""

    search_queries: list[str]
    data_source_index: int = 0
    original_search_score: float | None = None
    rerank_score: float | None = None
    filter_reason: str | None = None


class MessageContext(BaseModel):
    """OYD message context; intent is a JSON-encoded list of queries, as Azure sends it."""

    citations: list[CitationOut] | None = None
    intent: str | None = None
    all_retrieved_documents: list[RetrievedDocumentOut] | None = None


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None
    context: MessageContext | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str = "stop"
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    context: MessageContext | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class SearchResultOut(CitationOut):
    """One /v1/search hit: `score` is the index's; `rerank_score` the reranker's (semantic
    query types only), which then orders the results."""

    score: float
    original_search_score: float | None = None
    rerank_score: float | None = None
    section: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    results: list[SearchResultOut]
    search_queries: list[str]


class SearchCapabilities(BaseModel):
    """GET /v1/search/capabilities: the query types served as asked, and the reranker."""

    object: Literal["search.capabilities"] = "search.capabilities"
    query_types: list[QueryType]
    """semantic and vector_semantic_hybrid only with a reranker (else they fall back)."""
    reranker: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ondata"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EvaluationRunOut(BaseModel):
    """One past `ondata eval` run: what was measured and its headline (see GET .../{id})."""

    id: str
    object: Literal["evaluation"] = "evaluation"
    kind: str
    dataset: str
    created_at: str
    split: str | None = None
    queries: int | None = None
    questions: int | None = None
    seconds: float | None = None
    gate_passed: bool | None = None


class EvaluationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvaluationRunOut]


class ErrorDetail(BaseModel):
    """OpenAI's error object; `code` is always set and stable (api/README.md "Errors")."""

    message: str
    type: str
    param: str | None = None
    code: str


class ErrorBody(BaseModel):
    error: ErrorDetail
