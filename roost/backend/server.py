"""The backend as a process: ``roost serve`` in the foreground, a background one for clients, ``--stop``.

While a backend runs, the store home holds ``backend.json`` (its pid, host, port
and URL); ``roost serve --stop`` reads it to end that process. Clients call
:func:`ensure_running`, which starts a detached ``roost serve`` when nothing
answers at the configured URL and leaves it running for later processes; a
file lock makes two clients starting at once share one server.

Example:
    >>> from roost.backend import ensure_running
    >>> base_url = ensure_running(load_settings())   # "http://127.0.0.1:8765"
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from roost.config import DEFAULT_BASE, Settings
from roost.errors import RoostError
from roost.store import Store

logger = logging.getLogger(__name__)

STATE_FILE = "backend.json"
LOCK_FILE = "backend.lock"
LOG_FILE = "backend.log"
CONFIG_FILE = "backend.toml"
START_TIMEOUT_S = 300.0  # loading a 135M base takes ~5 s here; a cold disk or a bigger base much longer
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}


class BackendError(RoostError):
    """The backend could not be started, reached or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class ServerState:
    """What ``backend.json`` records about a running backend."""

    pid: int
    host: str
    port: int
    url: str
    started: float

    @classmethod
    def read(cls, home: Path) -> ServerState | None:
        path = Path(home) / STATE_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("ignoring the unreadable %s: %s", path, exc)
            return None

    def write(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, home / STATE_FILE)


# the foreground server ---------------------------------------------------------------


def serve(settings: Settings, models: list[str] | None = None, *,
          ready: Callable[[ServerState], None] | None = None) -> None:
    """Serve ``models`` (default: every alias whose base is in the store) until SIGINT or SIGTERM.

    Loads the bases before binding the port, so a client that sees ``/health``
    answer can use every model at once.

    Args:
        settings: host, port, API key, store, aliases.
        models: names (aliases or store names) to load.
        ready: called with the :class:`ServerState` once the server accepts connections.

    Raises:
        BackendError: another backend runs on this store, the port is taken, or a model is missing.
    """
    home = settings.home
    running = ServerState.read(home)
    if running is not None and running.pid != os.getpid() and _alive(running.pid):
        raise BackendError(f"a backend already runs on this store (pid {running.pid}, {running.url}); "
                           "stop it with `roost serve --stop`")
    _check_models(settings, models)
    asyncio.run(_serve(settings, models, ready))


async def _serve(settings: Settings, models: list[str] | None, ready: Callable[[ServerState], None] | None) -> None:
    import uvicorn

    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine

    engine = TransformersEngine(settings, models)
    # Start here rather than in the app's lifespan: a missing model is then one clear error,
    # not a uvicorn traceback. The lifespan's own start() is a no-op on a started engine.
    await engine.start()
    host, port = settings.backend.host, settings.backend.port
    try:
        sock = _bind(host, port)
    except BaseException:
        await engine.stop()
        raise
    port = sock.getsockname()[1]
    app = create_app(engine, settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))
    state = ServerState(os.getpid(), host, port, f"http://{_url_host(host)}:{port}", time.time())

    # uvicorn re-raises the signal that stopped it once it is done, with the handler that was
    # there before; handlers that do nothing let this function clean up and return normally.
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The state file is written before the first request can be answered: a client that sees
    # /health answer (ensure_running) must also find the file that `roost serve --stop` reads.
    task = None
    try:
        state.write(settings.home)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            logger.info("roost backend listening at %s (pid %d)", state.url, state.pid)
            if ready is not None:
                ready(state)
        await task
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        await engine.stop()
        current = ServerState.read(settings.home)
        if current is not None and current.pid == os.getpid():
            (settings.home / STATE_FILE).unlink(missing_ok=True)
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BackendError(f"cannot listen on {host}:{port}: {exc.strerror}; is another server using it? "
                           "pick another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _check_models(settings: Settings, models: list[str] | None) -> None:
    """Fail before loading anything when a named model, or the default alias's base, is not in the store."""
    from roost.models import resolve

    if models:
        for name in models:
            resolve(name, settings=settings)  # StoreError names what is missing and says `roost pull`
        return
    default = settings.alias("default")
    assert default is not None  # settings.alias("default") always exists
    if Store(settings.home).get("base", default.base) is None:
        how = ("run `roost pull`" if default.base == DEFAULT_BASE
               else f"pull it with `roost pull SOURCE --name {default.base}`")
        raise BackendError(f"the default model's base '{default.base}' is not in the store at {settings.home}; {how}")


# stopping ----------------------------------------------------------------------------


def stop_server(settings: Settings, timeout: float = 30.0) -> ServerState:
    """End the backend recorded in the store home (SIGTERM, then SIGKILL after ``timeout``); return what it was."""
    home = settings.home
    state = ServerState.read(home)
    if state is None:
        raise BackendError(f"no backend is running for the store at {home} (no {STATE_FILE} there)")
    if not _alive(state.pid) or not _is_roost(state.pid):
        (home / STATE_FILE).unlink(missing_ok=True)
        raise BackendError(f"no backend is running for the store at {home}: pid {state.pid} is gone "
                           f"(removed the stale {STATE_FILE})")
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(state.pid):
        if time.monotonic() > deadline:
            logger.warning("backend pid %d did not stop within %.0f s of SIGTERM; killing it", state.pid, timeout)
            os.kill(state.pid, signal.SIGKILL)
            _wait_gone(state.pid, 10)
            break
        time.sleep(0.1)
    (home / STATE_FILE).unlink(missing_ok=True)
    return state


def _alive(pid: int) -> bool:
    try:
        # Reap it first if it is our own child (a zombie still answers kill(pid, 0)).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _is_roost(pid: int) -> bool:
    """Whether ``pid`` runs roost (guards against a recycled pid); True where /proc cannot tell."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"roost" in cmdline


# the background server -------------------------------------------------------------------


def ensure_running(settings: Settings, *, timeout: float = START_TIMEOUT_S) -> str:
    """The backend's base URL, starting a background ``roost serve`` first if nothing answers there.

    Pulls the default model first when the default alias needs it and it is missing.
    The started server outlives this process; ``roost serve --stop`` ends it.

    Raises:
        BackendError: the URL is another machine's and does not answer, or the server failed to
            start within ``timeout`` seconds (the message points at its log).
    """
    url = settings.backend.base_url
    if _healthy(url):
        return url
    parts = urlsplit(url)
    host = parts.hostname or settings.backend.host
    if host not in _LOOPBACK and host != settings.backend.host:
        raise BackendError(f"no backend answers at {url}, and that is not this machine: start `roost serve` "
                           "there, or point ROOST_URL / [backend] url at a running one")
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / LOCK_FILE):
        if _healthy(url):  # another client started it while we waited for the lock
            return url
        _pull_default_if_missing(settings)
        port = parts.port or settings.backend.port
        process, log = _spawn(settings, "127.0.0.1" if host == "localhost" else host, port)
        _wait_until_healthy(url, process, log, timeout)
    return url


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _healthy(url: str) -> bool:
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=2.0)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    try:
        return response.json().get("status") == "ok"
    except ValueError:
        return False


def _pull_default_if_missing(settings: Settings) -> None:
    default = settings.alias("default")
    if default is not None and default.base == DEFAULT_BASE and Store(settings.home).get("base", DEFAULT_BASE) is None:
        from roost.models import pull

        logger.warning("the default model is not in the store at %s; pulling it first", settings.home)
        pull(settings=settings, progress=False)


def _spawn(settings: Settings, host: str, port: int) -> tuple[subprocess.Popen, Path]:
    """Start ``roost serve`` detached from this process, configured exactly as ``settings``."""
    home = settings.home
    config = home / CONFIG_FILE
    config.write_text(settings_toml(settings), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env["ROOST_CONFIG"] = str(config)
    if settings.backend.api_key:
        env["ROOST_API_KEY"] = settings.backend.api_key  # in the environment, never in a file or argv
    log = home / LOG_FILE
    cmd = [sys.executable, "-m", "roost.cli", "serve", "--host", host, "--port", str(port)]
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=home, start_new_session=True)
    logger.info("started a background backend (pid %d) on %s:%d; its log is %s", process.pid, host, port, log)
    return process, log


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        code = process.poll()
        if code is not None:
            raise BackendError(f"the background backend exited with code {code} before answering at {url}; "
                               f"see its log {log}:\n{_tail(log)}")
        time.sleep(0.25)
    process.terminate()
    raise BackendError(f"the background backend did not answer at {url} within {timeout:.0f} s; see its log {log}")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def settings_toml(settings: Settings) -> str:
    """``settings`` as roost.toml text, without the API key (which travels in the environment)."""
    sections: dict[str, dict[str, Any]] = {
        "store": {"home": str(settings.home)},
        "backend": settings.backend.model_dump(exclude={"api_key"}),
    }
    for name, alias in settings.aliases.items():
        sections[f"aliases.{json.dumps(name)}"] = alias.model_dump()
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None)
        out.append("")
    return "\n".join(out)
