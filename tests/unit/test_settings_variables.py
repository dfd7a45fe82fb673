"""Settings refuse what they would otherwise ignore: an ONDATA_ variable naming no setting,
an unknown key in a section. The error names the variable (and the setting it is close to)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from api.cli import register
from core.settings import NOT_SETTINGS, Settings, setting_variables, unknown_setting_variables


@pytest.fixture(autouse=True)
def no_ondata_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean environment (and no .env) whatever the shell running the tests holds."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("ONDATA_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "near"),
    [
        ("ONDATA_CHAT__PROVDER", "ONDATA_CHAT__PROVIDER"),
        ("ONDATA_DATA_DIRR", "ONDATA_DATA_DIR"),
        ("ONDATA_JOBS__REDIS_UTL", "ONDATA_JOBS__REDIS_URL"),
        ("ONDATA_DATA_DIR__X", "ONDATA_DATA_DIR"),
        ("ondata_api__hots", "ONDATA_API__HOST"),
    ],
)
def test_an_unknown_variable_fails_settings_with_its_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, near: str
) -> None:
    monkeypatch.setenv(variable, "openai")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert f"{variable} is not an ondata setting (did you mean {near}?)" in str(caught.value)


def test_an_unknown_variable_in_the_env_file_fails_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ONDATA_CHAT__PROVDER=openai\nONDATA_PORT=8080\n")
    with pytest.raises(ValidationError, match="ONDATA_CHAT__PROVDER is not an ondata setting"):
        Settings()


def test_known_variables_still_configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONDATA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONDATA_CHAT__PROVIDER", "compatible")
    monkeypatch.setenv("ondata_chat__base_url", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ONDATA_API", '{"port": 9001}')
    for name in NOT_SETTINGS:  # compose's host-side knobs and the like are not settings
        monkeypatch.setenv(name, "x")
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    assert (settings.chat.provider, settings.chat.base_url) == (
        "compatible",
        "http://127.0.0.1:9/v1",
    )
    assert settings.api.port == 9001


def test_a_section_refuses_an_unknown_key() -> None:
    with pytest.raises(ValidationError, match=r"chat\.provder"):
        Settings(chat={"provder": "openai"})  # type: ignore[arg-type]


def test_setting_variables_list_every_section_field() -> None:
    names = setting_variables()
    assert {
        "ONDATA_DATA_DIR",
        "ONDATA_CHAT",
        "ONDATA_CHAT__PROVIDER",
        "ONDATA_JOBS__REDIS_URL",
    } <= names
    assert unknown_setting_variables(["PATH", "ONDATA_CHAT__MODEL", "ONDATA_X"]) == ["ONDATA_X"]


def test_ondata_serve_fails_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONDATA_CHAT__PROVDER", "openai")
    cli = typer.Typer()
    register(cli)
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code != 0
    assert "ONDATA_CHAT__PROVDER is not an ondata setting" in str(result.exception)
