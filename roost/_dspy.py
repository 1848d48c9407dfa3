"""``RoostLM``: a ``dspy.LM`` that knows what the roost backend supports.

Imported only by :func:`roost.clients.dspy_lm`, so ``import roost`` never imports dspy.
DSPy asks LiteLLM's model table whether a model takes JSON schemas; a roost alias
is in no such table, so DSPy would assume not and send plain JSON mode. The backend
does constrain decoding to a schema, so this class says so: ``dspy.JSONAdapter``
then sends the signature's output schema and a small model's reply always parses.
"""

from __future__ import annotations

import dspy

# What /v1/chat/completions accepts (roost/backend/protocol.py).
BACKEND_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n",
                            "stream", "response_format", "tools", "tool_choice", "user"})


class RoostLM(dspy.LM):
    """A ``dspy.LM`` on the roost backend (see :func:`roost.clients.dspy_lm`)."""

    @property
    def supports_response_schema(self) -> bool:
        return True

    @property
    def supports_function_calling(self) -> bool:
        return True

    @property
    def supported_params(self) -> set[str]:
        return set(BACKEND_PARAMS)
