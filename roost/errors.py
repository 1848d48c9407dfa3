"""The exceptions roost raises on purpose.

Each one carries a message meant for the user: what was wrong, where, and what
is allowed instead. The CLI prints it as one line and exits non-zero.
"""

from __future__ import annotations


class RoostError(Exception):
    """Base class of every error roost raises for bad input or a failed step."""


class ConfigError(RoostError, ValueError):
    """roost.toml or a ROOST_* variable holds a key or value roost does not accept."""


class StoreError(RoostError):
    """A store name is invalid, or an entry is missing or cannot be written."""


class PullError(RoostError):
    """A model could not be fetched, verified or converted; nothing was written."""
