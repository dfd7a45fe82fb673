"""POST /v1/chat/completions and the Azure OpenAI deployment route that does the same."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from api.auth import Caller
from api.azure import AzureApiVersion
from api.convert import (
    answer_request,
    chat_messages,
    chat_params,
    fallback_headers,
    grounded_completion,
    included_contexts,
    plain_completion,
)
from api.deps import AnswersDep, CallerDep, SettingsDep, require_api_key
from api.history import ChatHistory, ChatHistoryDep, HistoryRecorder
from api.openapi import EVENT_STREAM, KEYED, errors
from api.schemas import ChatCompletion, ChatCompletionRequest
from api.streaming import ChunkHead, grounded_frames, open_stream, plain_frames
from core.errors import ChatModelNotConfiguredError, RequestTooLargeError
from core.metrics import phase
from core.settings import Settings
from retrieval.answer import AnswerService
from retrieval.chat import ChatModel
from retrieval.prompts import count_tokens, message_tokens

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    tags=["chat"],
    responses=KEYED | errors(403, 404, 502, 503, 504),
)

# Grounded streams hold back the context chunk and the first content chunk, plain streams
# their first chunk, so upstream failures before any text still get a proper HTTP status.
GROUNDED_PREFETCH = 2
PLAIN_PREFETCH = 1


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=EVENT_STREAM)
async def chat_completions(
    body: ChatCompletionRequest,
    answers: AnswersDep,
    settings: SettingsDep,
    history: ChatHistoryDep,
    caller: CallerDep,
) -> Response:
    """OpenAI chat completions; with `data_sources`, a grounded answer with citations."""
    return await _complete(body, answers=answers, settings=settings, history=history, caller=caller)


@router.post(
    "/openai/deployments/{deployment}/chat/completions",
    response_model=ChatCompletion,
    responses=EVENT_STREAM,
)
async def azure_chat_completions(
    deployment: str,
    body: ChatCompletionRequest,
    answers: AnswersDep,
    settings: SettingsDep,
    history: ChatHistoryDep,
    caller: CallerDep,
    api_version: AzureApiVersion,
) -> Response:
    """The Azure OpenAI path, so `AzureOpenAI` clients work unchanged (deployment = model);
    a missing or unknown `api-version` is a 400, as on Azure (api/azure.py)."""
    if body.model is None:
        body = body.model_copy(update={"model": deployment})
    return await _complete(body, answers=answers, settings=settings, history=history, caller=caller)


async def _complete(
    body: ChatCompletionRequest,
    *,
    answers: AnswerService,
    settings: Settings,
    history: ChatHistory,
    caller: Caller,
) -> Response:
    if len(body.messages) > settings.api.max_messages:
        raise RequestTooLargeError(
            f"{len(body.messages)} messages; at most {settings.api.max_messages} are accepted",
            param="messages",
        )
    recorder = history.recorder(body)
    if body.data_sources:
        return await _grounded(body, answers, recorder, caller)
    model = answers.chat_model
    if model is None:
        raise ChatModelNotConfiguredError(
            "No chat model is configured, so a request needs data_sources (the built-in "
            "extractive answerer only answers from an index). Set ONDATA_CHAT__PROVIDER "
            "to use a chat model without data_sources.",
            param="data_sources",
        )
    return await _plain(body, model, recorder, caller)


def _wants_usage(body: ChatCompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


async def _grounded(
    body: ChatCompletionRequest, answers: AnswerService, recorder: HistoryRecorder, caller: Caller
) -> Response:
    request = caller.scoped_answer(answer_request(body))
    estimate = await caller.admit_messages(request.messages, model=answers.model_name)
    include = included_contexts(body)
    fallback = fallback_headers(request.rerank, reranker=answers.searcher.reranker)
    id_, created = recorder.message_id, recorder.created
    if not body.stream:
        answer = await answers.answer(request)
        await caller.settle(answer.prompt_tokens + answer.completion_tokens, estimate=estimate)
        await recorder.record_answer(answer)
        completion = grounded_completion(answer, include=include, id_=id_, created=created)
        headers = {**recorder.headers(), **fallback}
        return JSONResponse(completion.model_dump(exclude_none=True), headers=headers)
    frames = grounded_frames(
        recorder.watch_events(caller.settling(answers.stream(request), estimate=estimate)),
        head=ChunkHead(id_, created, answers.model_name),
        include=include,
        include_usage=_wants_usage(body),
    )
    response = await open_stream(frames, prefetch=GROUNDED_PREFETCH)
    response.headers.update({**recorder.headers(), **fallback})
    return response


async def _plain(
    body: ChatCompletionRequest, model: ChatModel, recorder: HistoryRecorder, caller: Caller
) -> Response:
    messages, params = chat_messages(body.messages), chat_params(body)
    estimate = await caller.admit_messages(messages, model=model.name)
    id_, created = recorder.message_id, recorder.created
    if not body.stream:
        with phase("generate"):
            result = await model.complete(messages, params=params)
        await caller.settle(result.prompt_tokens + result.completion_tokens, estimate=estimate)
        await recorder.record_text(result.content, model=result.model)
        completion = plain_completion(result, id_=id_, created=created)
        return JSONResponse(completion.model_dump(exclude_none=True), headers=recorder.headers())
    frames = plain_frames(
        recorder.watch_text(model.stream(messages, params=params), model=model.name),
        head=ChunkHead(id_, created, model.name),
        include_usage=_wants_usage(body),
        prompt_tokens=message_tokens(messages, model=model.name),
        count_tokens=lambda text: count_tokens(text, model=model.name),
    )
    response = await open_stream(frames, prefetch=PLAIN_PREFETCH)
    response.headers.update(recorder.headers())
    return response
