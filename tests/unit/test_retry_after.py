"""Every 429 says when to retry: each OndataError with status 429 renders with Retry-After
(whole seconds, at least 1), whichever backend raised it."""

from __future__ import annotations

import pytest

from api.errors import ondata_error_response
from core import errors


def _all_errors(cls: type[errors.OndataError]) -> list[type[errors.OndataError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_errors(sub))
    return found


RATE_LIMITS = [c for c in _all_errors(errors.OndataError) if c.status_code == 429]


def test_retry_after_the_rate_limit_errors_are_found() -> None:
    names = {c.__name__ for c in RATE_LIMITS}
    assert {"RateLimitedError", "ChatModelRateLimitError", "EmbeddingRateLimitError"} <= names


@pytest.mark.parametrize("error", RATE_LIMITS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("retry_after", "header"), [(2.2, "3"), (0.1, "1")])
def test_retry_after_on_every_429(
    error: type[errors.OndataError], retry_after: float, header: str
) -> None:
    response = ondata_error_response(error("slow down", retry_after=retry_after))  # type: ignore[call-arg]
    assert response.status_code == 429
    assert response.headers["retry-after"] == header


@pytest.mark.parametrize(
    "error",
    [c for c in RATE_LIMITS if c is not errors.RateLimitedError],
    ids=lambda c: c.__name__,
)
def test_retry_after_when_upstream_gave_none_is_one_second(
    error: type[errors.OndataError],
) -> None:
    response = ondata_error_response(error("slow down"))
    assert response.headers["retry-after"] == "1"
