"""The `ondata` command: a root Typer app that packages extend through entry points.

Each package (ingest, retrieval, api, evaluation) registers its own commands under the
`ondata.cli` entry-point group, so the packages never import each other for the CLI.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

import typer

INDEX_HELP = "Index name [default: the default_index setting, ONDATA_DEFAULT_INDEX]."
TOP_HELP = "How many chunks to retrieve (top_n_documents)."
STRICTNESS_HELP = "1 (keep more chunks) to 5 (keep only close matches), as the API's strictness."
API_KEY_HELP = (
    "Key for --url [default: ONDATA_CLIENT__API_KEY, else this machine's ONDATA_API__API_KEY]."
)


def command_group(help_text: str, **kwargs: Any) -> typer.Typer:
    """A Typer app with ondata's help rendering.

    Plain (not rich) help: rich rendering reads "[default: ...]" in a help text as markup and
    drops it, and shows every flag as `<bool>`.
    """
    return typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=help_text, **kwargs)


def plural(count: int, noun: str) -> str:
    """'1 chunk', '2 chunks'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


app = command_group("ondata: answers from your documents, with citations.", add_completion=False)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def _register_plugins() -> None:
    for ep in sorted(entry_points(group="ondata.cli"), key=lambda e: e.name):
        ep.load()(app)


def main() -> None:
    _register_plugins()
    app()
