"""`ondata keys create|list|revoke`: API keys straight in the metadata store (no server needed).

The CLI acts as the operator: it may create any key, including the first admin key.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from core.cli import command_group
from core.errors import OndataError
from core.keys import (
    MAX_PER_MINUTE,
    ApiKeyInfo,
    KeyStore,
    clean_names,
    parse_groups,
    parse_role,
)
from core.settings import Settings, load_settings

app = command_group("Create, list and revoke API keys.")


def _store(settings: Settings | None = None) -> KeyStore:
    from core.db import make_engine

    settings = settings or load_settings()
    return KeyStore(make_engine(settings.resolved_database_url))


def _as_dict(info: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "prefix": info.prefix,
        "name": info.name,
        "role": info.role,
        "groups": None if info.groups is None else list(info.groups),
        "indexes": None if info.indexes is None else list(info.indexes),
        "requests_per_minute": info.requests_per_minute,
        "tokens_per_minute": info.tokens_per_minute,
        "created_at": info.created_at.isoformat(),
        "revoked": info.revoked,
    }


def _scope(values: tuple[str, ...] | None) -> str:
    return "*" if values is None else ",".join(values) or "(none)"


def _line(info: ApiKeyInfo) -> str:
    state = "revoked" if info.revoked else "active"
    return (
        f"{info.prefix}  {info.role:<11} groups={_scope(info.groups)} "
        f"indexes={_scope(info.indexes)} {state} {info.name}"
    ).rstrip()


def _fail(exc: OndataError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(2 if exc.status_code < 500 else 1)


@app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="admin, contributor or reader."),
    groups: str = typer.Option(
        None,
        "--groups",
        help="ACL groups, comma-separated; '*' every document "
        "[default: '*' for admin, public documents only otherwise].",
    ),
    indexes: str = typer.Option(
        None, "--indexes", help="Indexes the key may use, comma-separated [default: all]."
    ),
    name: str = typer.Option("", "--name", help="A label shown by `keys list`."),
    rpm: int = typer.Option(
        None, "--requests-per-minute", min=1, max=MAX_PER_MINUTE, help="Override the default."
    ),
    tpm: int = typer.Option(
        None, "--tokens-per-minute", min=1, max=MAX_PER_MINUTE, help="Override the default."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the key as one JSON line."),
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    try:
        checked = parse_role(role)
        created = _store().create(
            role=checked,
            groups=parse_groups(groups, role=checked),
            indexes=None if indexes is None else clean_names(indexes.split(","), param="indexes"),
            name=name,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
        )
    except OndataError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps({"key": created.key, **_as_dict(created.info)}))
        return
    typer.echo(_line(created.info))
    typer.echo(f"key: {created.key}")
    typer.echo("Store it now: it cannot be shown again.", err=True)


@app.command("list")
def list_keys(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List keys (their prefixes, never the keys)."""
    infos = _store().list(include_revoked=include_revoked)
    if as_json:
        typer.echo(json.dumps([_as_dict(i) for i in infos]))
        return
    if not infos:
        kind = "keys" if include_revoked else "active keys"
        typer.echo(f"no {kind} (create one with `ondata keys create --role admin`)")
    for info in infos:
        typer.echo(_line(info))


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id or its od_<id> prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the revoked key as JSON."),
) -> None:
    """Revoke a key: requests with it answer 401 from now on. The last admin key (with its
    scope) is kept unless the operator key (ONDATA_API__API_KEY) is configured."""
    settings = load_settings()
    try:
        info = _store(settings).revoke(key_id, allow_last_admin=settings.api.api_key is not None)
    except OndataError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(_as_dict(info)) if as_json else _line(info))
