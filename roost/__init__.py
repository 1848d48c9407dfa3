"""roost: single- and multi-LLM systems on small models you fine-tune yourself.

``import roost`` stays light: torch, transformers and every agent framework are
imported only by the function that needs them.

Example:
    >>> import roost
    >>> path = roost.pull()                 # the embedded default model
    >>> [m.name for m in roost.models.list()]
    ['smollm2-135m-instruct']
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_settings", "models", "pull", "run", "Settings", "Store"]

if TYPE_CHECKING:
    from roost import models
    from roost.config import Settings, load_settings
    from roost.models import pull
    from roost.store import Store
    from roost.targets import run

_LAZY = {
    "Settings": ("roost.config", "Settings"),
    "load_settings": ("roost.config", "load_settings"),
    "Store": ("roost.store", "Store"),
    "pull": ("roost.models", "pull"),
    "models": ("roost.models", None),
    "run": ("roost.targets", "run"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'roost' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = import_module(module_name)
    return module if attr is None else getattr(module, attr)
