"""Chat history for chat completions: which conversation a request belongs to, and recording
the question and the answer (content, citations, intent) once the answer is complete.

A request joins a conversation with the body field `conversation_id` or the header
`x-ondata-conversation-id`; an unknown id starts a new conversation. Without either, nothing
is stored. The answer's message id is the completion's `id`, so streamed chunks carry it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header

from api.deps import PrincipalDep, ServicesDep
from api.schemas import ChatCompletionRequest
from core.conversations import ConversationStore, NewMessage, check_conversation_id
from core.errors import InvalidRequestError
from core.models import Answer
from retrieval.answer import AnswerDone, AnswerEvent

logger = logging.getLogger(__name__)

CONVERSATION_HEADER = "x-ondata-conversation-id"
MESSAGE_HEADER = "x-ondata-message-id"


async def get_conversations(services: ServicesDep) -> ConversationStore:
    return ConversationStore(services.store)


ConversationsDep = Annotated[ConversationStore, Depends(get_conversations)]


async def get_owner(principal: PrincipalDep) -> str:
    """Whose conversations a request sees: the caller's key (one owner while auth is off)."""
    return principal.subject


OwnerDep = Annotated[str, Depends(get_owner)]


@dataclass(frozen=True)
class ChatHistory:
    """What a chat request needs to join a conversation; built per request."""

    conversations: ConversationStore
    owner: str
    header_id: str | None

    def recorder(self, body: ChatCompletionRequest) -> HistoryRecorder:
        """The recorder for this request (a no-op one when no conversation id was given)."""
        conversation_id = _conversation_id(body.conversation_id, self.header_id)
        return HistoryRecorder(
            conversations=self.conversations,
            owner=self.owner,
            conversation_id=conversation_id,
            question=_question(body),
            index_name=body.data_sources[0].parameters.index_name if body.data_sources else None,
        )


async def get_chat_history(
    conversations: ConversationsDep,
    owner: OwnerDep,
    header_id: Annotated[str | None, Header(alias=CONVERSATION_HEADER)] = None,
) -> ChatHistory:
    return ChatHistory(conversations, owner, header_id)


ChatHistoryDep = Annotated[ChatHistory, Depends(get_chat_history)]


class HistoryRecorder:
    """Records one exchange (question + answer) in a conversation; does nothing without one."""

    def __init__(
        self,
        *,
        conversations: ConversationStore,
        owner: str,
        conversation_id: str | None,
        question: str,
        index_name: str | None,
    ) -> None:
        self._conversations = conversations
        self._owner = owner
        self.conversation_id = conversation_id
        self._question = question
        self._index_name = index_name
        self.message_id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def headers(self) -> dict[str, str]:
        """Response headers naming the conversation and the answer's message id."""
        if self.conversation_id is None:
            return {}
        return {CONVERSATION_HEADER: self.conversation_id, MESSAGE_HEADER: self.message_id}

    async def record_answer(self, answer: Answer) -> None:
        """Store the question and the verified answer with its citations and intent."""
        await self._record(
            NewMessage(
                role="assistant",
                content=answer.content,
                id=self.message_id,
                citations=answer.citations,
                intent=answer.intent,
                index_name=self._index_name,
                model=answer.model,
            )
        )

    async def record_text(self, content: str, *, model: str) -> None:
        """Store the question and a plain (ungrounded) answer."""
        await self._record(
            NewMessage(role="assistant", content=content, id=self.message_id, model=model)
        )

    async def watch_events(self, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
        """Pass a grounded stream through; record the answer when its last event arrives."""
        async for event in events:
            if isinstance(event, AnswerDone):
                await self.record_answer(event.answer)
            yield event

    async def watch_text(self, deltas: AsyncIterator[str], *, model: str) -> AsyncIterator[str]:
        """Pass a plain stream through; record the whole text once the stream has ended."""
        parts: list[str] = []
        async for text in deltas:
            parts.append(text)
            yield text
        await self.record_text("".join(parts), model=model)

    async def _record(self, answer: NewMessage) -> None:
        if self.conversation_id is None:
            return
        turns = [NewMessage(role="user", content=self._question), answer]
        await asyncio.to_thread(
            self._conversations.record_exchange, self._owner, self.conversation_id, turns
        )
        logger.info(
            "recorded exchange conversation=%s message=%s", self.conversation_id, self.message_id
        )


def _conversation_id(body_id: str | None, header_id: str | None) -> str | None:
    if body_id is not None and header_id is not None and body_id != header_id:
        raise InvalidRequestError(
            f"conversation_id '{body_id}' and the {CONVERSATION_HEADER} header "
            f"'{header_id}' differ; send one.",
            param="conversation_id",
        )
    chosen = body_id if body_id is not None else header_id
    return None if chosen is None else check_conversation_id(chosen)


def _question(body: ChatCompletionRequest) -> str:
    """The turn being answered: the last user message."""
    users = [m for m in body.messages if m.role == "user"]
    return users[-1].text() if users else ""
