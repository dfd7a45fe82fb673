"""What the CLI's `--url` commands share: which key they send and what a refusal tells the user."""

from __future__ import annotations

from typing import Any

import httpx

from core.settings import Settings

KEY_HINT = (
    "pass a key with --api-key KEY or set ONDATA_CLIENT__API_KEY "
    "(an admin creates one with `ondata keys create --role contributor`)"
)


class RemoteError(Exception):
    """The server answered with an error, or could not be reached."""


def client_api_key(settings: Settings, explicit: str | None) -> str | None:
    """The key to send: --api-key, else client.api_key, else the operator's api.api_key."""
    if explicit:
        return explicit
    for secret in (settings.client.api_key, settings.api.api_key):
        if secret is not None and secret.get_secret_value():
            return secret.get_secret_value()
    return None


def status_message(url: str, status: int, message: str, *, sent_key: bool) -> str:
    """One line for an error answer; a 401 says how to pass a key."""
    if status == 401:
        why = "rejected the API key" if sent_key else "needs an API key"
        return f"{url} {why} (401: {message}); {KEY_HINT}"
    return f"{status}: {message}"


def server_client(url: str, api_key: str | None, *, timeout_s: float = 300.0) -> httpx.Client:
    """An HTTP client for the server at url that sends the key (when there is one)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)


def send_json(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    sent_key: bool,
    missing_ok: bool = False,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """One request; its JSON, None for a 404 when missing_ok, RemoteError for other errors."""
    url = str(client.base_url).rstrip("/")
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from exc
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code >= 400:
        message = _error_message(response)
        raise RemoteError(status_message(url, response.status_code, message, sent_key=sent_key))
    body: dict[str, Any] = response.json()
    return body


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
