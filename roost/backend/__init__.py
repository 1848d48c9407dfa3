"""The shared OpenAI-compatible backend that serves every local model and adapter.

``ensure_running(settings)`` returns the backend's URL, starting a background
server first when none answers; ``create_app(engine, settings)`` builds the
FastAPI app. Both are imported lazily, so ``import roost.backend`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "ensure_running", "stop_server"]

if TYPE_CHECKING:
    from roost.backend.app import create_app
    from roost.backend.server import ensure_running, stop_server

_LAZY = {
    "create_app": "roost.backend.app",
    "ensure_running": "roost.backend.server",
    "stop_server": "roost.backend.server",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'roost.backend' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
