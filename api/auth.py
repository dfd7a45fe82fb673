"""Who a request acts as: its API key (or the operator's key), the trusted groups header, and
whether auth is on at all (any key exists, auth_required, or a non-loopback bind).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine

from api.limits import RateLimiter, make_token_buckets
from core.access import EVERYTHING
from core.errors import AuthenticationError
from core.keys import ANONYMOUS, KeyStore, Principal, clean_names, principal_for
from core.settings import ApiSettings
from retrieval.answer import AnswerDone, AnswerEvent, AnswerRequest
from retrieval.chat import ChatMessage
from retrieval.prompts import message_tokens
from retrieval.search import SearchRequest, with_acl

OPERATOR = Principal(subject="operator", scope=EVERYTHING, authenticated=True)
_HOW = "send 'Authorization: Bearer KEY' or 'api-key: KEY'"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer KEY` (OpenAI clients) or `api-key: KEY` (Azure)."""
    if key := headers.get("api-key", "").strip():
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def open_bind_refusal(settings: ApiSettings, keys: KeyStore) -> str | None:
    """Why serving on `settings.host` must not start (auth off on a non-loopback bind)."""
    if is_loopback(settings.host):
        return None
    if settings.auth_required or settings.api_key is not None or keys.any_exist():
        return None
    return (
        f"refusing to listen on {settings.host} with auth off: anyone who can reach the port "
        "could read every document and change every index. Create a key first "
        "(`ondata keys create --role admin`), or set ONDATA_API__AUTH_REQUIRED=true, "
        "or listen on 127.0.0.1."
    )


@dataclass(frozen=True)
class AccessControl:
    """Resolves principals from request headers; holds the key store and the rate limiter."""

    settings: ApiSettings
    keys: KeyStore
    limiter: RateLimiter

    def auth_enforced(self) -> bool:
        """Auth is off only with no key anywhere, not required, and a loopback bind."""
        return (
            self.settings.auth_required
            or self.settings.api_key is not None
            or not is_loopback(self.settings.host)
            or self.keys.any_exist()
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal; AuthenticationError (401) for a missing, wrong or revoked
        key while auth is on. Blocking (one indexed lookup in the metadata store)."""
        principal = self._by_key(presented_key(headers))
        return self._with_trusted_groups(principal, headers)

    def _by_key(self, key: str | None) -> Principal:
        if key is not None and self._is_operator_key(key):
            return OPERATOR
        info = self.keys.authenticate(key) if key is not None else None
        if info is not None:
            return principal_for(info)
        if not self.auth_enforced():
            return ANONYMOUS
        if key is None:
            raise AuthenticationError(f"Missing API key: {_HOW}.")
        raise AuthenticationError("Invalid API key: it is wrong or has been revoked.")

    def _is_operator_key(self, key: str) -> bool:
        expected = self.settings.api_key
        return expected is not None and secrets.compare_digest(
            key.encode(), expected.get_secret_value().encode()
        )

    def _with_trusted_groups(self, principal: Principal, headers: Mapping[str, str]) -> Principal:
        """A gateway's groups narrow the key's (they never widen them). The subject then names
        the gateway's user and the group set, so one gateway key never pools the history of
        users, or of one user under different groups."""
        header = self.settings.trusted_groups_header
        if header is None or (value := headers.get(header)) is None:
            return principal
        groups = clean_names(value.split(","), param=header)
        user_header = self.settings.trusted_user_header
        user = headers.get(user_header, "") if user_header else ""
        scope = principal.scope.narrow(groups=groups)
        who = f"user:{user}|groups:{','.join(sorted(scope.groups or ()))}"
        subject = f"{principal.subject}~{hashlib.sha256(who.encode()).hexdigest()[:16]}"
        return replace(principal, scope=scope, subject=subject)


@dataclass(frozen=True)
class Caller:
    """A request's principal with its limiter: scopes retrieval and meters tokens."""

    principal: Principal
    limiter: RateLimiter

    def scoped_answer(self, request: AnswerRequest) -> AnswerRequest:
        """The request on an index the key may read, restricted to the caller's ACL groups."""
        scope = self.principal.scope
        scope.require_index(request.index_name, param=_INDEX_PARAM)
        narrowed = scope.narrow(indexes=request.scope.indexes, groups=request.scope.groups)
        return replace(request, scope=narrowed)

    def scoped_search(self, request: SearchRequest) -> SearchRequest:
        """The search on an index the key may read, filtered inside the index by ACL groups."""
        scope = self.principal.scope
        scope.require_index(request.index_name, param="index_name")
        return replace(request, filter=with_acl(request.filter, scope.as_filter()))

    async def admit_messages(self, messages: Sequence[ChatMessage], *, model: str) -> int:
        """Charge the prompt's estimated tokens (429 when spent); returns the estimate."""
        estimate = message_tokens(messages, model=model)
        await self.limiter.admit_tokens(self.principal, estimate)
        return estimate

    async def settle(self, used: int, *, estimate: int) -> None:
        """Charge what the answer used beyond the estimate."""
        await self.limiter.charge_tokens(self.principal, used - estimate)

    async def settling(
        self, events: AsyncIterator[AnswerEvent], *, estimate: int
    ) -> AsyncIterator[AnswerEvent]:
        """Pass a stream through, settling its usage when the final answer arrives."""
        try:
            async for event in events:
                if isinstance(event, AnswerDone):
                    used = event.answer.prompt_tokens + event.answer.completion_tokens
                    await self.settle(used, estimate=estimate)
                yield event
        finally:
            # a client that disconnects closes this generator; close the answer stream too
            if isinstance(events, AsyncGenerator):
                await events.aclose()


_INDEX_PARAM = "data_sources.0.parameters.index_name"


@asynccontextmanager
async def open_access(settings: ApiSettings, engine: Engine) -> AsyncIterator[AccessControl]:
    """The access control of one app: key store on `engine`, limiter (Redis when configured)."""
    limiter = RateLimiter(
        make_token_buckets(settings.rate_limit_redis_url),
        requests_per_minute=settings.requests_per_minute,
        tokens_per_minute=settings.tokens_per_minute,
    )
    try:
        yield AccessControl(settings=settings, keys=KeyStore(engine), limiter=limiter)
    finally:
        await limiter.aclose()
