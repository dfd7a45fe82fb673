"""`python -m core.migrations <alembic command> ...` against the configured database, e.g.
`python -m core.migrations revision -m "api keys" --autogenerate` or `... current`."""

from __future__ import annotations

import sys

from alembic.config import CommandLine

from core.migrations import alembic_config
from core.settings import load_settings


def main(argv: list[str]) -> None:
    cli = CommandLine(prog="python -m core.migrations")
    options = cli.parser.parse_args(argv)
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", load_settings().resolved_database_url)
    cli.run_cmd(config, options)


if __name__ == "__main__":
    main(sys.argv[1:])
