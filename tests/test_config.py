from __future__ import annotations

from pathlib import Path

import pytest

from roost.config import DEFAULT_BASE, load_settings
from roost.errors import ConfigError


def test_defaults_without_any_file(roost_home: Path) -> None:
    settings = load_settings()
    assert settings.source is None
    assert settings.home == roost_home
    assert settings.backend.base_url == "http://127.0.0.1:8765"
    assert settings.alias("default").base == DEFAULT_BASE
    assert settings.alias("nope") is None


def test_file_in_working_directory_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("roost.toml").write_text(
        '[backend]\nport = 9000\napi_key = "sekret"\n'
        '[aliases.writer]\nbase = "smollm2-135m-instruct"\nadapter = "writer-v1"\ntemperature = 0.7\n'
    )
    settings = load_settings()
    assert settings.source == Path.cwd() / "roost.toml"
    assert settings.backend.port == 9000 and settings.backend.api_key == "sekret"
    assert settings.alias("writer").adapter == "writer-v1"
    assert "default" in settings.all_aliases() and "writer" in settings.all_aliases()

    monkeypatch.setenv("ROOST_PORT", "9100")
    monkeypatch.setenv("ROOST_URL", "http://10.0.0.5:80/v1/")
    settings = load_settings()
    assert settings.backend.port == 9100
    assert settings.backend.base_url == "http://10.0.0.5:80"


def test_user_config_is_found_when_cwd_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOST_HOME")
    user = Path("~/.config/roost").expanduser()
    user.mkdir(parents=True)
    (user / "roost.toml").write_text('[store]\nhome = "~/models"\n')
    settings = load_settings()
    assert settings.source == user / "roost.toml"
    assert settings.home == Path("~/models").expanduser()


def test_alias_can_redefine_default() -> None:
    Path("roost.toml").write_text('[aliases.default]\nbase = "other"\n')
    assert load_settings().alias("default").base == "other"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("colour = 1\n", ["roost.toml", "unknown key 'colour'", "store, backend, aliases"]),
        ("[backend]\nprot = 1\n", ["roost.toml", "unknown key 'backend.prot'", "host, port"]),
        ("[backend]\nport = 'abc'\n", ["roost.toml", "backend.port", "integer"]),
        ("[aliases.x]\nbase = 'b'\ntemprature = 1\n", ["unknown key 'aliases.x.temprature'", "temperature"]),
        ("[aliases.x]\ntemperature = 1\n", ["aliases.x.base", "Field required"]),
        ("[aliases.x]\nbase = 'b'\ntemperature = -1\n", ["aliases.x.temperature", "greater than or equal to 0"]),
        ("backend = 3\n", ["'backend' must be a table"]),
        ("[backend\n", ["not valid TOML"]),
    ],
)
def test_bad_file_names_file_key_and_allowed(text: str, words: list[str]) -> None:
    Path("roost.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    for word in words:
        assert word in str(info.value)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_PORT", "eighty")
    with pytest.raises(ConfigError, match="ROOST_PORT='eighty'"):
        load_settings()


def test_roost_config_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROOST_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()
