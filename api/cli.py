"""CLI commands of the API package: `ondata serve`, `ondata ask` and `ondata keys ...`.

Heavy imports happen inside the commands, so registering them keeps `ondata` quick to start.
"""

from __future__ import annotations

import asyncio

import typer
from pydantic import ValidationError

from core.cli import API_KEY_HELP, INDEX_HELP, STRICTNESS_HELP, TOP_HELP
from core.errors import OndataError
from core.remote import RemoteError, client_api_key
from core.settings import Settings, load_settings
from retrieval.search import DEFAULT_STRICTNESS, DEFAULT_TOP_N


def serve(
    host: str = typer.Option(None, "--host", help="Interface to listen on [default: 127.0.0.1]."),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="Port [default: 8000]."),
) -> None:
    """Serve the OpenAI-compatible API (chat completions with data_sources, search, models)."""
    import uvicorn

    from api.app import create_app
    from core.logging import configure_logging

    settings = load_settings()
    port = settings.api.port if port is None else port
    api = settings.api.model_copy(update={"host": host or settings.api.host, "port": port})
    settings = settings.model_copy(update={"api": api})
    _refuse_open_bind(settings)
    configure_logging(settings.log_format)
    app = create_app(settings)
    uvicorn.run(app, host=api.host, port=api.port, log_config=None, access_log=False)


def _refuse_open_bind(settings: Settings) -> None:
    """Exit (2) when the bind is not loopback and auth would be off."""
    from api.auth import open_bind_refusal
    from core.db import make_engine
    from core.keys import KeyStore

    engine = make_engine(settings.resolved_database_url)
    try:
        refusal = open_bind_refusal(settings.api, KeyStore(engine))
    finally:
        engine.dispose()
    if refusal:
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(2)


def ask(
    question: str = typer.Argument(..., help="The question to answer from the index."),
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is written."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the chat.completion (or, with --stream, each chunk) as JSON."
    ),
    top: int = typer.Option(DEFAULT_TOP_N, "--top", min=1, max=20, help=TOP_HELP),
    strictness: int = typer.Option(
        DEFAULT_STRICTNESS, "--strictness", min=1, max=5, help=STRICTNESS_HELP
    ),
    url: str = typer.Option(
        None, "--url", help="Ask a running `ondata serve` at this URL instead of in-process."
    ),
    api_key: str = typer.Option(None, "--api-key", help=API_KEY_HELP),
) -> None:
    """Answer a question from an index and print the answer and its citations.

    In-process by default; with --url, through a running server (an embedded Qdrant Edge
    index can only be open in one process, so use --url while `ondata serve` runs).
    """
    from api.ask import ask_body, run_ask, run_ask_remote

    settings = load_settings()
    try:
        body = ask_body(
            question,
            index=index or settings.default_index,
            stream=stream,
            top=top,
            strictness=strictness,
        )
        if url:
            key = client_api_key(settings, api_key)
            run_ask_remote(url, body, api_key=key, as_json=as_json)
        else:
            asyncio.run(run_ask(settings, body, as_json=as_json))
    except RemoteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    from api.keys_cli import app as keys_app

    app.command("serve")(serve)
    app.command("ask")(ask)
    app.add_typer(keys_app, name="keys")
