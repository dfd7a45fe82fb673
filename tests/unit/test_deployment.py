"""docker-compose.yml, the Dockerfile and docs/ondata.env.example, checked without Docker:
each ondata service's command parses with the real CLI, its environment (as Compose would
interpolate it) names only real settings and builds `Settings`, and the services agree on
the store, queue, index and data volume."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer.core import TyperGroup
from typer.testing import CliRunner

from api.auth import open_bind_refusal
from core.cli import _register_plugins, app
from core.db import make_engine
from core.keys import KeyStore
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / "docs" / "ondata.env.example"
ONDATA_SERVICES = ("api", "worker")
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `$$` (the subset the file uses)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match["name"]) or match["default"] or ""

    return _VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def cli() -> TyperGroup:
    _register_plugins()
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return group


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment after interpolation with an empty shell environment."""
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "environment is a mapping"
    return {k: interpolate(str(v), {}) for k, v in raw.items()}


def env_file_lines(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ONDATA_* variable of this shell leaks into the settings under test."""
    for key in [k for k in os.environ if k.startswith("ONDATA_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def setting_exists(variable: str) -> bool:
    """Whether ONDATA_A__B names a field of Settings (extra='ignore' would hide a typo)."""
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("ONDATA_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


# --- the compose file -------------------------------------------------------------------------


def test_compose_runs_the_engines_and_both_ondata_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ONDATA_SERVICES:
        assert services[name]["command"][0] == "ondata"
        assert services[name]["build"] == "."
    assert services["api"]["image"] == services["worker"]["image"]


def test_compose_worker_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # `--scale worker=N` needs no fixed container name and no published host port
    assert "container_name" not in worker
    assert "ports" not in worker


def test_compose_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = interpolate(mount, {}).split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


@pytest.mark.parametrize("name", ONDATA_SERVICES)
def test_compose_command_parses_with_the_cli(
    compose: dict[str, Any], cli: TyperGroup, name: str
) -> None:
    program, command, *args = compose["services"][name]["command"]
    assert program == "ondata"
    root = typer.Context(cli, info_name="ondata")
    _, sub, rest = cli.resolve_command(root, [command, *args])
    assert sub is not None, f"ondata has no command {command!r}"
    sub.make_context(command, list(rest), parent=root)  # raises on an unknown or bad option
    help_run = CliRunner().invoke(app, [command, "--help"])
    assert help_run.exit_code == 0, help_run.output


def test_cli_check_rejects_a_bad_option(cli: TyperGroup) -> None:
    root = typer.Context(cli, info_name="ondata")
    for args in (["--no-such-option"], ["--threads", "0"]):
        _, sub, rest = cli.resolve_command(root, ["worker", *args])
        assert sub is not None
        try:
            sub.make_context("worker", list(rest), parent=root)
        except Exception as exc:  # typer's own (vendored) click usage errors exit with 2
            assert getattr(exc, "exit_code", None) == 2, exc  # noqa: PT017 (no public class)
        else:
            pytest.fail(f"ondata worker {' '.join(args)} parsed")


@pytest.mark.parametrize("name", ONDATA_SERVICES)
def test_compose_environment_names_only_real_settings(compose: dict[str, Any], name: str) -> None:
    env = service_environment(compose["services"][name])
    unknown = [k for k in env if k.startswith("ONDATA_") and not setting_exists(k)]
    assert unknown == []


def test_setting_check_catches_a_typo() -> None:
    assert setting_exists("ONDATA_JOBS__REDIS_URL")
    assert not setting_exists("ONDATA_JOBS__REDIS_UTL")
    assert not setting_exists("ONDATA_DATA_DIR__X")


@pytest.mark.parametrize("name", ONDATA_SERVICES)
def test_compose_environment_builds_scale_out_settings(
    compose: dict[str, Any], name: str, clean_environment: pytest.MonkeyPatch
) -> None:
    settings = settings_from(service_environment(compose["services"][name]), clean_environment)
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql+psycopg://ondata:ondata@postgres:5432/")
    assert (settings.index.backend, settings.index.url) == ("server", "http://qdrant:6333")
    assert (settings.jobs.queue, settings.jobs.redis_url) == ("redis", "redis://redis:6379/0")
    assert settings.data_dir == Path("/data")


def test_compose_api_runs_no_jobs_and_shares_rate_limits(
    compose: dict[str, Any], clean_environment: pytest.MonkeyPatch
) -> None:
    settings = settings_from(service_environment(compose["services"]["api"]), clean_environment)
    assert settings.jobs.consumer_threads == 0
    assert settings.api.rate_limit_redis_url == "redis://redis:6379/1"


def test_compose_api_bind_is_one_serve_accepts(
    compose: dict[str, Any], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    command = compose["services"]["api"]["command"]
    host = command[command.index("--host") + 1]
    env = service_environment(compose["services"]["api"])
    api = settings_from(env, clean_environment).api.model_copy(update={"host": host})
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        keys = KeyStore(engine)  # no key exists yet, as on a first start
        assert open_bind_refusal(api, keys) is None
        # without ONDATA_API__AUTH_REQUIRED, `ondata serve` would refuse this bind
        assert open_bind_refusal(api.model_copy(update={"auth_required": False}), keys)
    finally:
        engine.dispose()


def test_compose_api_and_workers_share_store_queue_index_and_files(
    compose: dict[str, Any],
) -> None:
    api, worker = (compose["services"][n] for n in ONDATA_SERVICES)
    shared = ("ONDATA_DATABASE_URL", "ONDATA_INDEX__URL", "ONDATA_JOBS__REDIS_URL")
    api_env, worker_env = service_environment(api), service_environment(worker)
    assert {k: api_env[k] for k in shared} == {k: worker_env[k] for k in shared}
    data_dir = api_env["ONDATA_DATA_DIR"]
    assert data_dir == worker_env["ONDATA_DATA_DIR"]

    # uploads written by the API are read by workers: the same volume at the data dir
    def data_mounts(service: dict[str, Any]) -> list[str]:
        mounts = (interpolate(m, {}) for m in service["volumes"])
        return [m for m in mounts if m.split(":")[1] == data_dir]

    assert data_mounts(api)
    assert data_mounts(api) == data_mounts(worker)


def test_compose_engines_use_the_credentials_ondata_is_given(
    compose: dict[str, Any], clean_environment: pytest.MonkeyPatch
) -> None:
    postgres = service_environment(compose["services"]["postgres"])
    settings = settings_from(service_environment(compose["services"]["api"]), clean_environment)
    url = settings.resolved_database_url
    expected = (
        f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{postgres['POSTGRES_DB']}"
    )
    assert url.endswith(expected)


def test_compose_interpolates_a_password_from_the_shell() -> None:
    raw = "postgresql+psycopg://ondata:${POSTGRES_PASSWORD:-ondata}@postgres:5432/ondata"
    assert interpolate(raw, {"POSTGRES_PASSWORD": "s3cret"}).startswith(
        "postgresql+psycopg://ondata:s3cret@"
    )
    assert interpolate("a$$b", {}) == "a$b"


# --- the env file example and the Dockerfile --------------------------------------------------


def test_env_example_names_real_settings_that_load_with_the_compose_environment(
    compose: dict[str, Any], clean_environment: pytest.MonkeyPatch
) -> None:
    example = env_file_lines(ENV_EXAMPLE)
    assert [k for k in example if not setting_exists(k)] == []
    env = {**service_environment(compose["services"]["api"]), **example}
    settings = settings_from(env, clean_environment)
    assert settings.chat.provider == "compatible"


def test_dockerfile_builds_the_image_the_compose_services_run() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "-c constraints.txt" in text
    assert "python -m retrieval.onnx_export" in text
    assert "HF_HUB_OFFLINE=1" in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1))[:2] == ["ondata", "serve"]
