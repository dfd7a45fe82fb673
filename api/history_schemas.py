"""Wire models of chat history (conversations, messages, feedback) and their conversions.

Grounded answers carry the same `context` as a chat completion (`citations`, and `intent` as a
JSON-encoded list), so a client renders history and live answers alike.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.convert import citation_out
from api.schemas import CitationOut
from core.conversations import (
    MAX_TITLE_CHARS,
    Conversation,
    Feedback,
    FeedbackCategory,
    Message,
    Rating,
)
from core.text import VisibleText

MAX_COMMENT_CHARS = 4000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreate(_Request):
    """POST /v1/conversations: an empty conversation (the id is generated when omitted)."""

    id: str | None = Field(default=None, min_length=1, max_length=128)
    title: VisibleText = Field(default="", max_length=MAX_TITLE_CHARS)


class ConversationRename(_Request):
    """PATCH /v1/conversations/{id}."""

    title: VisibleText = Field(max_length=MAX_TITLE_CHARS)


class FeedbackIn(_Request):
    """PUT .../messages/{message_id}/feedback: thumbs up, or down with what was wrong."""

    rating: Rating
    categories: list[FeedbackCategory] = Field(default_factory=list, max_length=5)
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)

    @model_validator(mode="after")
    def _categories_say_what_was_wrong(self) -> FeedbackIn:
        if self.rating == "up" and self.categories:
            raise ValueError("categories say what was wrong: give them with rating 'down'")
        return self


class FeedbackOut(BaseModel):
    object: Literal["feedback"] = "feedback"
    message_id: str
    rating: Rating
    categories: list[FeedbackCategory]
    comment: str
    created_at: dt.datetime


class FeedbackReviewOut(FeedbackOut):
    """One entry of GET /v1/feedback (administrators): whose, where, and on what answer."""

    owner: str
    conversation_id: str
    message_content: str


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FeedbackReviewOut]


class FeedbackDeleted(BaseModel):
    object: Literal["feedback.deleted"] = "feedback.deleted"
    message_id: str
    deleted: bool


class HistoryContext(BaseModel):
    """A stored answer's OYD context: the citations its [docN] markers point at, and the
    search queries (a JSON-encoded list, as chat completions send `intent`)."""

    citations: list[CitationOut]
    intent: str


class MessageOut(BaseModel):
    id: str
    object: Literal["conversation.message"] = "conversation.message"
    role: Literal["user", "assistant"]
    content: str
    created_at: dt.datetime
    context: HistoryContext | None = None
    index_name: str | None = None
    model: str | None = None
    feedback: FeedbackOut | None = None


class ConversationOut(BaseModel):
    """A conversation's summary (lists, create, rename)."""

    id: str
    object: Literal["conversation"] = "conversation"
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime
    message_count: int


class ConversationDetailOut(ConversationOut):
    """GET /v1/conversations/{id}: the summary and every message, oldest first."""

    messages: list[MessageOut]


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationOut]


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


def conversation_out(conversation: Conversation) -> ConversationOut:
    return ConversationOut(
        id=conversation.id,
        title=conversation.title,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        message_count=conversation.message_count,
    )


def conversation_detail_out(conversation: Conversation) -> ConversationDetailOut:
    return ConversationDetailOut(
        **conversation_out(conversation).model_dump(),
        messages=[message_out(m) for m in conversation.messages],
    )


def message_out(message: Message) -> MessageOut:
    context = None
    if message.role == "assistant" and message.index_name is not None:
        context = HistoryContext(
            citations=[citation_out(c) for c in message.citations],
            intent=json.dumps(list(message.intent)),
        )
    return MessageOut(
        id=message.id,
        role=message.role,
        content=message.content,
        created_at=message.created_at,
        context=context,
        index_name=message.index_name,
        model=message.model,
        feedback=None if message.feedback is None else feedback_out(message.feedback),
    )


def feedback_out(feedback: Feedback) -> FeedbackOut:
    return FeedbackOut(
        message_id=feedback.message_id,
        rating=feedback.rating,
        categories=list(feedback.categories),
        comment=feedback.comment,
        created_at=feedback.created_at,
    )


def feedback_review_out(feedback: Feedback) -> FeedbackReviewOut:
    return FeedbackReviewOut(
        **feedback_out(feedback).model_dump(),
        owner=feedback.owner,
        conversation_id=feedback.conversation_id,
        message_content=feedback.message_content,
    )
