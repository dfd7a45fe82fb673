"""The api-version rule of the Azure OpenAI routes (`/openai/deployments/{d}/...`).

Azure answers 400 when `api-version` is missing or not one of its versions. Its versions are
dates, `YYYY-MM-DD` (GA, e.g. 2024-10-21) or `YYYY-MM-DD-preview` (e.g. 2025-04-01-preview),
the first being 2022-12-01. We accept every such date from then on, later ones included, so a
newer SDK's default keeps working; the request shape does not depend on the version.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import Depends, Query

from core.errors import MissingApiVersionError, UnsupportedApiVersionError

FIRST_API_VERSION = date(2022, 12, 1)
_VERSION = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:-preview)?")


def check_api_version(value: str | None) -> str:
    """The api-version if Azure could have issued it; the errors carry Azure's own words."""
    if not value:
        raise MissingApiVersionError(
            "Missing required query parameter: api-version (e.g. ?api-version=2024-10-21).",
            param="api-version",
        )
    if not _is_azure_version(value):
        raise UnsupportedApiVersionError(
            f"API version not supported: {value!r}. Use an Azure OpenAI version: a date "
            "from 2022-12-01 on, YYYY-MM-DD or YYYY-MM-DD-preview (e.g. 2024-10-21).",
            param="api-version",
        )
    return value


def _is_azure_version(value: str) -> bool:
    match = _VERSION.fullmatch(value)
    if match is None:
        return False
    try:
        day = date(*(int(part) for part in match.groups()))
    except ValueError:
        return False
    return day >= FIRST_API_VERSION


def azure_api_version(
    api_version: Annotated[str | None, Query(alias="api-version")] = None,
) -> str:
    return check_api_version(api_version)


AzureApiVersion = Annotated[str, Depends(azure_api_version)]
