"""One place that renders every failure as OpenAI's `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.schemas import ErrorBody, ErrorDetail
from core.errors import OndataError

logger = logging.getLogger(__name__)

_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_body(message: str, *, type_: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error object as a dict (also sent inside a failing SSE stream)."""
    detail = ErrorDetail(message=message, type=type_, param=param, code=code)
    return ErrorBody(error=detail).model_dump()


def ondata_error_body(exc: OndataError) -> dict[str, Any]:
    return error_body(exc.message, type_=exc.error_type, param=exc.param, code=exc.code)


def ondata_error_response(exc: OndataError) -> JSONResponse:
    """The HTTP response for a domain error; every 429 says when to retry (Retry-After)."""
    headers: dict[str, str] = {}
    if exc.status_code == 429:
        # each rate-limit error carries retry_after (seconds, None when upstream said nothing)
        retry_after = getattr(exc, "retry_after", None)
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    return JSONResponse(ondata_error_body(exc), status_code=exc.status_code, headers=headers)


def _validation_message(
    exc: RequestValidationError, *, content_type: str
) -> tuple[str, str | None, str]:
    """The first problem worded for a person, the dotted path to the field at fault, a code."""
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {"type": "", "loc": ()}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param, kind = ".".join(loc) or None, str(first.get("type", ""))
    if kind == "json_invalid":
        return "The request body is not valid JSON.", None, "invalid_json"
    if param is None:
        return _body_message(content_type), None, "invalid_body"
    if kind == "missing":
        return f"{param} is required.", param, "missing_required_parameter"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    return f"{param}: {_problem(first)}", param, "invalid_value"


def _body_message(content_type: str) -> str:
    if "json" not in content_type:
        sent = content_type.split(";")[0].strip() or "no Content-Type"
        return f"The request body must be JSON sent as application/json, not {sent}."
    return 'The request body must be a JSON object, such as {"messages": [...]}.'


def _problem(error: dict[str, Any]) -> str:
    """Pydantic's wording made plainer: what the value must be, and what was sent."""
    kind, ctx = str(error.get("type", "")), error.get("ctx") or {}
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, not {error.get('input')!r}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return message.replace("Input should be", "must be").replace("List should", "must")


async def _on_ondata_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OndataError)
    if exc.status_code >= 500:
        logger.warning("request failed: %s (%s)", exc.message, type(exc).__name__)
    return ondata_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    message, param, code = _validation_message(exc, content_type=content_type)
    body = error_body(message, type_="invalid_request_error", param=param, code=code)
    return JSONResponse(body, status_code=400)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    if exc.status_code >= 500:
        type_ = "server_error"
    code = _HTTP_CODES.get(exc.status_code, "server_error" if exc.status_code >= 500 else type_)
    body = error_body(str(exc.detail), type_=type_, code=code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    body = error_body(
        "The server had an error processing the request.", type_="server_error", code="server_error"
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the OpenAI error shape."""
    app.add_exception_handler(OndataError, _on_ondata_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
