"""roost.toml + ROOST_* environment variables -> one typed :class:`Settings`.

Lookup order, later wins: built-in defaults, the first roost.toml found
(``$ROOST_CONFIG``, else ``./roost.toml``, else ``~/.config/roost/roost.toml``),
then the environment (``ROOST_HOME``, ``ROOST_HOST``, ``ROOST_PORT``,
``ROOST_URL``, ``ROOST_API_KEY``).

Example roost.toml::

    [store]
    home = "~/.cache/roost"

    [backend]
    port = 8765

    [aliases.writer]
    base = "smollm2-135m-instruct"
    adapter = "writer-v1"
    temperature = 0.7
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roost.errors import ConfigError

DEFAULT_BASE = "smollm2-135m-instruct"
"""Store name of the embedded default model (see :func:`roost.models.pull`)."""

CONFIG_NAME = "roost.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Strict):
    home: Path = Field(
        default_factory=lambda: Path("~/.cache/roost").expanduser(),
        description="Folder holding bases, adapters, runs and the trace database. ROOST_HOME overrides it.",
    )


class BackendSettings(_Strict):
    host: str = Field("127.0.0.1", description="Interface `roost serve` binds; loopback unless you open it.")
    port: int = Field(8765, ge=1, le=65535, description="Port `roost serve` listens on.")
    url: str | None = Field(None, description="Where clients reach the backend; default http://HOST:PORT.")
    api_key: str | None = Field(None, description="Bearer key the backend requires; none means no auth.")
    trace_retention_days: int | None = Field(
        30, ge=1, description="Days the trace database keeps each call; none keeps them forever."
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for the engine's tensor work; none uses every core. On a machine "
        "busy with other work, 1 keeps torch's threads from waiting on each other."
    )
    quantization: Literal["auto", "none"] = Field(
        "auto", description="'auto' decodes with int4 kernels where a base's weights are already 4-bit per group "
        "(dequantized from a Q4 GGUF, like the default model); 'none' always uses the stored dtype."
    )

    @property
    def base_url(self) -> str:
        """The backend's root URL, without the ``/v1`` suffix."""
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/").removesuffix("/v1")


class Alias(_Strict):
    """A short name for a base model, an optional adapter on it, and generation defaults."""

    base: str = Field(description="Store name, local folder or hub id of the base model.")
    adapter: str | None = Field(None, description="Store name of a LoRA adapter applied on the base.")
    temperature: float | None = Field(None, ge=0, description="Default sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Default nucleus-sampling mass.")
    max_tokens: int | None = Field(None, gt=0, description="Default cap on generated tokens.")


class Settings(_Strict):
    """Everything roost reads from roost.toml and the environment."""

    store: StoreSettings = Field(default_factory=StoreSettings)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    aliases: dict[str, Alias] = Field(default_factory=dict)
    source: Path | None = Field(None, exclude=True, description="The roost.toml these settings came from.")

    @property
    def home(self) -> Path:
        return self.store.home

    def alias(self, name: str) -> Alias | None:
        """The alias called ``name``; ``default`` always exists and means the embedded default model."""
        if name in self.aliases:
            return self.aliases[name]
        if name == "default":
            return Alias(base=DEFAULT_BASE)
        return None

    def all_aliases(self) -> dict[str, Alias]:
        """Configured aliases plus ``default`` when the file does not define it."""
        return {"default": Alias(base=DEFAULT_BASE), **self.aliases}


def find_config_file(cwd: Path | None = None) -> Path | None:
    """The roost.toml in force: ``$ROOST_CONFIG``, else the working directory's, else the user's."""
    explicit = os.environ.get("ROOST_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"ROOST_CONFIG points at {path}, which is not a file")
        return path
    for candidate in ((cwd or Path.cwd()) / CONFIG_NAME, Path("~/.config/roost").expanduser() / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


_ENV = {
    "ROOST_HOME": ("store", "home"),
    "ROOST_HOST": ("backend", "host"),
    "ROOST_PORT": ("backend", "port"),
    "ROOST_URL": ("backend", "url"),
    "ROOST_API_KEY": ("backend", "api_key"),
}


def load_settings(path: Path | str | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read roost.toml (``path``, or the one :func:`find_config_file` finds) and apply ROOST_* overrides.

    Raises:
        ConfigError: naming the file, the key and what is allowed, for an unknown key or a bad value.
    """
    env = os.environ if env is None else env
    file = Path(path) if path is not None else find_config_file()
    raw: dict[str, Any] = {}
    if file is not None:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None
    _check_sections(raw, file)

    env_keys = []
    for var, (section, key) in _ENV.items():
        if env.get(var):
            raw.setdefault(section, {})
            raw[section] = {**raw[section], key: env[var]}
            env_keys.append((section, key, var))

    try:
        settings = Settings.model_validate({**raw, "source": file})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, env_keys)) from None
    home = settings.store.home.expanduser()
    return settings.model_copy(update={"store": StoreSettings(home=home)})


def _check_sections(raw: dict[str, Any], file: Path | None) -> None:
    allowed = ("store", "backend", "aliases")
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(f"{file}: unknown key '{key}'; allowed top-level keys: {', '.join(allowed)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{key}' must be a table ([{key}]), not {type(value).__name__}")


def _describe(exc: ValidationError, file: Path | None, env_keys: list[tuple[str, str, str]]) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc)
    for section, key, var in env_keys:
        if loc[:2] == [section, key]:
            return f"{var}={error.get('input')!r}: {error['msg']}"
    prefix = f"{file}: " if file else ""
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(name for name in model.model_fields if name != "source")
        return f"{prefix}unknown key '{where}'; allowed here: {allowed}"
    return f"{prefix}key '{where}': {error['msg']} (got {error.get('input')!r})"


def _model_at(loc: list[str]) -> type[BaseModel]:
    if not loc:
        return Settings
    if loc[0] == "aliases":
        return Alias
    return {"store": StoreSettings, "backend": BackendSettings}.get(loc[0], Settings)
