"""Running `ondata eval ...` in-process through its Typer commands, as the CLI does."""

from __future__ import annotations

import json
from typing import Any

import typer
from click.testing import Result
from typer.testing import CliRunner

from evaluation import cli


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """ondata (test root)."""

    cli.register(app)
    return app


def eval_cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    """`ondata ARGS` with only the eval commands registered."""
    return CliRunner().invoke(_app(), args, env=env)


def run_eval(kind: str, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """`ondata eval <kind> ARGS --json`: the exit code and the JSON object of its last line."""
    result = eval_cli(["eval", kind, *args, "--json"], env)
    lines = result.stdout.strip().splitlines()
    assert lines, result.output
    return result.exit_code, json.loads(lines[-1])
