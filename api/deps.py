"""FastAPI dependencies as `Annotated` aliases: the services, settings and the API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from api.services import Services
from core.errors import AuthenticationError
from core.settings import Settings
from retrieval.answer import AnswerService
from retrieval.search import Searcher


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_answers(services: ServicesDep) -> AnswerService:
    return services.answers


def get_searcher(services: ServicesDep) -> Searcher:
    return services.searcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
AnswersDep = Annotated[AnswerService, Depends(get_answers)]
SearcherDep = Annotated[Searcher, Depends(get_searcher)]


def _presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer KEY` (OpenAI clients) or `api-key: KEY` (Azure)."""
    if key := request.headers.get("api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """When ONDATA_API__API_KEY is set, every API call must present it."""
    expected = settings.api.api_key
    if expected is None:
        return
    presented = _presented_key(request)
    if presented is None or not secrets.compare_digest(
        presented.encode(), expected.get_secret_value().encode()
    ):
        raise AuthenticationError(
            "Missing or wrong API key: send 'Authorization: Bearer KEY' or 'api-key: KEY'."
        )
