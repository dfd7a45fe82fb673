"""/v1/keys (admin): create, list and revoke API keys.

An admin key restricted to some indexes or groups can only mint and manage keys within them,
so no key can hand out more than it holds.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccessDep, Admin
from api.openapi import KEYED, errors
from core.access import Role, Scope
from core.errors import PermissionDeniedError
from core.keys import MAX_PER_MINUTE, ApiKeyInfo, Principal, clean_names, default_groups

router = APIRouter(tags=["keys"], responses=KEYED | errors(403))


class KeyCreateBody(BaseModel):
    """POST /v1/keys. `groups` omitted: every document for an admin, public ones otherwise;
    `["*"]` every document; `indexes` omitted or null: every index (within the caller's)."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    groups: list[str] | None = None
    indexes: list[str] | None = None
    name: str = Field(default="", max_length=200)
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_PER_MINUTE)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_PER_MINUTE)


class KeyOut(BaseModel):
    """A key as listed: never the secret."""

    object: Literal["api_key"] = "api_key"
    id: str
    prefix: str
    name: str
    role: Role
    groups: list[str] | None
    indexes: list[str] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: dt.datetime
    revoked: bool
    revoked_at: dt.datetime | None


class CreatedKeyOut(KeyOut):
    """The new key; `key` is shown this once."""

    key: str


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]


def key_out(info: ApiKeyInfo) -> KeyOut:
    return KeyOut(
        id=info.id,
        prefix=info.prefix,
        name=info.name,
        role=info.role,
        groups=None if info.groups is None else list(info.groups),
        indexes=None if info.indexes is None else list(info.indexes),
        requests_per_minute=info.requests_per_minute,
        tokens_per_minute=info.tokens_per_minute,
        created_at=info.created_at,
        revoked=info.revoked,
        revoked_at=info.revoked_at,
    )


def can_manage(admin: Principal, info: ApiKeyInfo) -> bool:
    """Whether `admin` holds at least the index scope and groups of the key `info`."""
    return admin.scope.contains(info.scope)


def _requested_groups(body: KeyCreateBody) -> tuple[str, ...] | None:
    if body.groups is None:
        return default_groups(body.role)
    if body.groups == ["*"]:
        return None
    return clean_names(body.groups, param="groups")


def _check_grant(
    admin: Principal, groups: tuple[str, ...] | None, indexes: list[str] | None
) -> None:
    held = admin.scope
    scope = None if indexes is None else clean_names(indexes, param="indexes")
    if not held.contains(Scope(role="reader", indexes=scope, groups=held.groups)):
        raise PermissionDeniedError(
            "a key can only be scoped to indexes the creating key has", param="indexes"
        )
    if not held.contains(Scope(role="reader", indexes=held.indexes, groups=groups)):
        raise PermissionDeniedError(
            "a key can only carry groups the creating key has", param="groups"
        )


@router.post("/v1/keys")
async def create_key(body: KeyCreateBody, admin: Admin, access: AccessDep) -> CreatedKeyOut:
    """A new key (admin only); the response is the only time the key is shown."""
    groups = _requested_groups(body)
    indexes = body.indexes if body.indexes is not None else admin.scope.indexes
    _check_grant(admin, groups, None if indexes is None else list(indexes))
    created = await run_in_threadpool(
        access.keys.create,
        role=body.role,
        groups=groups,
        indexes=indexes,
        name=body.name,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
    )
    return CreatedKeyOut(key=created.key, **key_out(created.info).model_dump())


@router.get("/v1/keys")
async def list_keys(
    admin: Admin,
    access: AccessDep,
    include_revoked: Annotated[bool, Query()] = False,
) -> KeyList:
    """The keys this admin can manage (active ones unless include_revoked)."""
    infos = await run_in_threadpool(access.keys.list, include_revoked=include_revoked)
    return KeyList(data=[key_out(i) for i in infos if can_manage(admin, i)])


@router.delete("/v1/keys/{key_id}", responses=errors(404, 409))
async def revoke_key(key_id: str, admin: Admin, access: AccessDep) -> KeyOut:
    """Revoke a key (by id or `od_<id>` prefix); it answers 401 from then on."""
    info = await run_in_threadpool(access.keys.get, key_id)
    if not can_manage(admin, info):
        raise PermissionDeniedError("the key has scope beyond the caller's", param="key_id")
    operator = access.settings.api_key is not None
    revoked = await run_in_threadpool(access.keys.revoke, key_id, allow_last_admin=operator)
    return key_out(revoked)
