"""What the CLI's `--url` commands share: which key they send and what a refusal tells the user."""

from __future__ import annotations

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
