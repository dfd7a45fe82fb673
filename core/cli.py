"""The `ondata` command: a root Typer app that packages extend through entry points.

Each package (ingest, retrieval, api, evaluation) registers its own commands under the
`ondata.cli` entry-point group, so the packages never import each other for the CLI.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="ondata: answers from your documents, with citations.",
)


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
