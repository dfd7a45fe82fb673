"""Chat history: the caller's conversations (list, create, read, rename, delete), feedback on
answers, and every caller's feedback for unrestricted administrators.

Readers see and change only their own conversations; another caller's id is a 404. The owner
is the key (with a trusted gateway: the user and its group set), so a history never shows
answers drawn from documents outside the scope they were asked under.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Admin, Reader
from api.history import ConversationsDep, OwnerDep
from api.history_schemas import (
    ConversationCreate,
    ConversationDeleted,
    ConversationDetailOut,
    ConversationList,
    ConversationOut,
    ConversationRename,
    FeedbackDeleted,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    conversation_detail_out,
    conversation_out,
    feedback_out,
    feedback_review_out,
)
from api.openapi import KEYED, errors
from api.pagination import Offset
from core.conversations import FeedbackCategory, Rating

router = APIRouter(tags=["conversations"], responses=KEYED)

Limit = Annotated[int, Query(ge=1, le=200)]
CONVERSATION = "/v1/conversations/{conversation_id}"
FEEDBACK = CONVERSATION + "/messages/{message_id}/feedback"


@router.get("/v1/conversations")
async def list_conversations(
    _: Reader, owner: OwnerDep, store: ConversationsDep, limit: Limit = 50, offset: Offset = 0
) -> ConversationList:
    """The caller's conversations, most recently updated first (without messages)."""
    rows = await asyncio.to_thread(store.list_conversations, owner, limit=limit, offset=offset)
    return ConversationList(data=[conversation_out(c) for c in rows])


@router.post("/v1/conversations", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def create_conversation(
    body: ConversationCreate, _: Reader, owner: OwnerDep, store: ConversationsDep
) -> ConversationOut:
    """An empty conversation; chat requests naming an unknown id also create one."""
    row = await asyncio.to_thread(store.create_conversation, owner, body.id, title=body.title)
    return conversation_out(row)


@router.get(CONVERSATION, responses=errors(404))
async def get_conversation(
    conversation_id: str, _: Reader, owner: OwnerDep, store: ConversationsDep
) -> ConversationDetailOut:
    """The conversation with its messages (oldest first), citations, intent and feedback."""
    row = await asyncio.to_thread(store.get_conversation, owner, conversation_id)
    return conversation_detail_out(row)


@router.patch(CONVERSATION, responses=errors(404))
async def rename_conversation(
    conversation_id: str,
    body: ConversationRename,
    _: Reader,
    owner: OwnerDep,
    store: ConversationsDep,
) -> ConversationOut:
    row = await asyncio.to_thread(store.rename, owner, conversation_id, body.title)
    return conversation_out(row)


@router.delete(CONVERSATION, responses=errors(404))
async def delete_conversation(
    conversation_id: str, _: Reader, owner: OwnerDep, store: ConversationsDep
) -> ConversationDeleted:
    """Delete the conversation with its messages and their feedback."""
    await asyncio.to_thread(store.delete_conversation, owner, conversation_id)
    return ConversationDeleted(id=conversation_id)


@router.put(FEEDBACK, responses=errors(404))
async def give_feedback(
    conversation_id: str,
    message_id: str,
    body: FeedbackIn,
    _: Reader,
    owner: OwnerDep,
    store: ConversationsDep,
) -> FeedbackOut:
    """Thumbs up or down on an answer (replaces earlier feedback on it)."""
    feedback = await asyncio.to_thread(
        store.set_feedback,
        owner,
        conversation_id,
        message_id,
        rating=body.rating,
        categories=body.categories,
        comment=body.comment,
    )
    return feedback_out(feedback)


@router.delete(FEEDBACK, responses=errors(404))
async def withdraw_feedback(
    conversation_id: str, message_id: str, _: Reader, owner: OwnerDep, store: ConversationsDep
) -> FeedbackDeleted:
    deleted = await asyncio.to_thread(store.clear_feedback, owner, conversation_id, message_id)
    return FeedbackDeleted(message_id=message_id, deleted=deleted)


@router.get("/v1/feedback", responses=errors(403))
async def list_feedback(
    principal: Admin,
    owner: OwnerDep,
    store: ConversationsDep,
    rating: Rating | None = None,
    category: FeedbackCategory | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> FeedbackList:
    """Feedback, newest first, with the answer it is about (administrators). Every caller's
    for an admin whose scope is unrestricted (every index, every document); an admin scoped
    to indexes or groups sees only its own, since an answer can quote any document its
    asker could read."""
    mine = None if principal.scope.unrestricted else owner
    rows = await asyncio.to_thread(
        store.list_feedback,
        rating=rating,
        category=category,
        owner=mine,
        limit=limit,
        offset=offset,
    )
    return FeedbackList(data=[feedback_review_out(f) for f in rows])
