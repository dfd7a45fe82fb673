"""FastAPI dependencies as `Annotated` aliases: the services, settings, and who is calling.

Access (see api/README.md "Keys and roles"): `PrincipalDep` is the caller; `Reader`,
`Contributor`, `Admin` also check the role; `IndexReader`/`IndexContributor`/`IndexAdmin` also
check the key's index scope against the `{name}` path parameter. Everything else asks
`principal.scope` (core/access.py): `require_index` for an index named in a body, `can_read`
for a document's ACL groups, `as_filter` for retrieval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from api.auth import AccessControl, Caller
from api.services import Services
from core.access import Role
from core.keys import Principal
from core.settings import Settings
from retrieval.answer import AnswerService
from retrieval.search import Searcher


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_answers(services: ServicesDep) -> AnswerService:
    return services.answers


async def get_searcher(services: ServicesDep) -> Searcher:
    return services.searcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
AnswersDep = Annotated[AnswerService, Depends(get_answers)]
SearcherDep = Annotated[Searcher, Depends(get_searcher)]


async def get_access(request: Request) -> AccessControl:
    access: AccessControl = request.app.state.access
    return access


AccessDep = Annotated[AccessControl, Depends(get_access)]


def _authenticated(request: Request, access: AccessDep) -> Principal:
    # a plain def: FastAPI runs it in the threadpool (the key lookup is a database read).
    # It is the only one: the other dependencies are async, as each plain one costs a
    # threadpool hop per request.
    return access.authenticate(request.headers)


async def get_principal(
    request: Request, access: AccessDep, principal: Annotated[Principal, Depends(_authenticated)]
) -> Principal:
    """The caller (401 without a valid key while auth is on), counted against its
    requests/minute (429 with Retry-After). Resolved once per request however often used."""
    request.state.principal = principal
    await access.limiter.admit_request(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, who must hold `role` or a higher one (403 otherwise)."""

    async def dependency(principal: PrincipalDep) -> Principal:
        principal.scope.require_role(role)
        return principal

    return dependency


def require_index_access(
    role: Role = "reader", *, path_param: str = "name"
) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency: the caller, holding `role`, with the index named by the path parameter
    `path_param` in its key's scope (403 otherwise, before the index is even looked up)."""

    async def dependency(request: Request, principal: PrincipalDep) -> Principal:
        principal.scope.require_role(role)
        principal.scope.require_index(str(request.path_params[path_param]), param=path_param)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require_role("reader"))]
Contributor = Annotated[Principal, Depends(require_role("contributor"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
IndexReader = Annotated[Principal, Depends(require_index_access("reader"))]
IndexContributor = Annotated[Principal, Depends(require_index_access("contributor"))]
IndexAdmin = Annotated[Principal, Depends(require_index_access("admin"))]


async def get_caller(principal: PrincipalDep, access: AccessDep) -> Caller:
    return Caller(principal=principal, limiter=access.limiter)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_api_key(principal: PrincipalDep) -> None:
    """Router-level guard (`dependencies=[Depends(require_api_key)]`): any valid key."""
