"""The OpenAPI document's error responses: each route declares the statuses it answers, each
with the OpenAI error body that api/errors.py renders.

Routers declare `responses=KEYED` (every route behind an API key) plus what their routes add
(`errors(404)`...). Two rules hold for every operation and are applied to the document once,
here: request validation fails with 400, not FastAPI's 422, and any request body may be
refused with 413 by the body size limit (api/app.py `BodySizeLimit`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]

DESCRIPTIONS = {
    400: "Invalid request: a parameter, header or the body is wrong (`param` names it)",
    401: "No API key, or a wrong or revoked one",
    403: "The key's role or index scope does not allow this",
    404: "Not found: the named resource does not exist (or is not the caller's)",
    409: "Conflict with the resource's current state",
    413: "The request body, a file or the messages are over a configured limit",
    415: "Not a file type ondata can parse",
    429: "Rate limited: the key's requests or tokens per minute, or an upstream model's",
    502: "The chat model or the embedding backend failed",
    503: "A backend is unavailable (vector index, job queue)",
    504: "The chat model did not answer in time",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}
}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_ERROR_REF = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}


def errors(*statuses: int) -> Responses:
    """`responses=` for these error statuses, each with the OpenAI error body."""
    return {status: _error(status) for status in statuses}


def _error(status: int) -> dict[str, Any]:
    declared: dict[str, Any] = {"model": ErrorBody, "description": DESCRIPTIONS[status]}
    if status == 429:
        declared["headers"] = RETRY_AFTER
    return declared


# every route behind an API key: bad parameters or headers, no valid key, rate limits
KEYED = errors(400, 401, 429)
# chat completions with `stream: true` (the JSON completion is the response model)
EVENT_STREAM: Responses = {
    200: {
        "description": "The completion; with `stream: true`, Server-Sent Events of chunks",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
# a document's stored file (its own type), or a redirect to the URL it was ingested from
DOCUMENT_CONTENT: Responses = {
    200: {"description": "The stored file", "content": {"*/*": {"schema": {}}}},
    307: {
        "description": "The document came from a URL: Location points there",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
}


def install_openapi(app: FastAPI) -> None:
    """Serve the document with the two app-wide rules applied (see the module docstring)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_app_wide_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_app_wide_errors(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with 422 replaced by 400 and 413 on operations with a body (in place)."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _amend(operation["responses"], has_body="requestBody" in operation)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def _amend(responses: dict[str, Any], *, has_body: bool) -> None:
    if responses.pop("422", None) is not None:
        responses.setdefault("400", _error_response(400))
    if has_body:
        responses.setdefault("413", _error_response(413))


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
