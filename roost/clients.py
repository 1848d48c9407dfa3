"""One model name -> each framework's own client, pointed at the roost backend.

Every function takes a roost model name (an alias from roost.toml such as
``default``, or a store name), makes sure a backend answers
(:func:`roost.backend.ensure_running`), and returns the framework's native
client on ``{backend}/v1`` with the configured API key (``roost`` when the
backend needs none). ``caller=`` tags each request with the ``X-Roost-Caller``
header, which the trace store records, so traces show which system and agent
made each call (``"graphs.supervisor/math"``). ``temperature=`` and
``max_tokens=`` set per-client generation options; unset, the alias's defaults
in roost.toml apply on the backend.

Nothing here reaches the network beyond the backend: LiteLLM reads its bundled
model table, CrewAI's telemetry and tracing are switched off, and no client is
given a hosted embedder or key.

Example:
    >>> lm = dspy_lm("default", caller="my-app/classifier", temperature=0.0)
    >>> chat = langchain_chat("writer", caller="my-app/writer")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from roost.config import Settings, load_settings
from roost.errors import RoostError

if TYPE_CHECKING:
    import crewai
    import dspy
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    from langchain_openai import ChatOpenAI

__all__ = ["CALLER_HEADER", "AUTOGEN_MODEL_INFO", "autogen_client", "crewai_llm", "dspy_lm", "endpoint",
           "langchain_chat"]

CALLER_HEADER = "X-Roost-Caller"
NO_KEY = "roost"
"""Sent as the API key when the backend needs none: every OpenAI client insists on some key."""

AUTOGEN_MODEL_INFO: dict[str, Any] = {
    "vision": False,
    "function_calling": True,  # the backend grammar-constrains tool calls
    "json_output": True,
    "structured_output": True,  # response_format json_schema is constrained the same way
    "family": "unknown",
    # SmolLM2's chat template renders one system turn well; AutoGen merges them when this is False.
    "multiple_system_messages": False,
}


class MissingExtra(RoostError, ImportError):
    """A framework roost needs for this call is not installed."""


def endpoint(settings: Settings | None = None) -> tuple[str, str]:
    """``(base_url ending in /v1, api_key)`` of a running backend, starting one when none answers."""
    from roost.backend import ensure_running

    settings = settings or load_settings()
    return f"{ensure_running(settings)}/v1", settings.backend.api_key or NO_KEY


def _headers(caller: str | None) -> dict[str, str]:
    return {CALLER_HEADER: caller} if caller else {}


def _generation(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens)) if v is not None}


def _require(module: str, extra: str) -> None:
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise MissingExtra(f"{module} is not installed: install roost[{extra}]")


def dspy_lm(name: str = "default", *, caller: str | None = "dspy", temperature: float | None = None,
            max_tokens: int | None = None, cache: bool = False, settings: Settings | None = None,
            **options: Any) -> dspy.LM:
    """A ``dspy.LM`` for roost model ``name``.

    The LM goes through LiteLLM's OpenAI-compatible route and declares that the model
    takes ``response_format`` JSON schemas, so ``dspy.JSONAdapter`` asks for structured
    output and the backend enforces it while decoding.

    Args:
        name: alias or store name.
        caller: trace tag, e.g. ``"programs.classify"``.
        temperature: sampling temperature for every call of this LM.
        max_tokens: cap on generated tokens per call.
        cache: DSPy's response cache; off by default so that every call reaches the backend
            and lands in the trace store, which fine-tuning reads.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: passed to ``dspy.LM`` (e.g. ``num_retries``).
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price table
    _require("dspy", "dspy")
    from roost._dspy import RoostLM

    base_url, api_key = endpoint(settings)
    headers = {**options.pop("extra_headers", {}), **_headers(caller)}
    return RoostLM(f"openai/{name}", api_base=base_url, api_key=api_key, extra_headers=headers, cache=cache,
                   **_generation(temperature, max_tokens), **options)


def langchain_chat(name: str = "default", *, caller: str | None = "langchain", temperature: float | None = None,
                   max_tokens: int | None = None, settings: Settings | None = None,
                   **options: Any) -> ChatOpenAI:
    """A LangChain ``ChatOpenAI`` for roost model ``name`` (for LangGraph and LangChain).

    Args:
        name: alias or store name.
        caller: trace tag, e.g. ``"graphs.supervisor/math"``.
        temperature: sampling temperature.
        max_tokens: cap on generated tokens per call.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: passed to ``ChatOpenAI`` (e.g. ``timeout``, ``max_retries``).
    """
    _require("langchain_openai", "langgraph")
    from langchain_openai import ChatOpenAI

    base_url, api_key = endpoint(settings)
    headers = {**options.pop("default_headers", {}), **_headers(caller)}
    return ChatOpenAI(model=name, base_url=base_url, api_key=api_key, default_headers=headers,
                      **_generation(temperature, max_tokens), **options)


def autogen_client(name: str = "default", *, caller: str | None = "autogen", temperature: float | None = None,
                   max_tokens: int | None = None, settings: Settings | None = None,
                   **options: Any) -> OpenAIChatCompletionClient:
    """An AutoGen ``OpenAIChatCompletionClient`` for roost model ``name``, with its ``model_info`` filled in.

    Args:
        name: alias or store name.
        caller: trace tag, e.g. ``"agents.team/critic"``.
        temperature: sampling temperature.
        max_tokens: cap on generated tokens per call.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: passed to ``OpenAIChatCompletionClient`` (``model_info`` overrides roost's).
    """
    _require("autogen_ext", "autogen")
    _require("openai", "autogen")
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    base_url, api_key = endpoint(settings)
    headers = {**options.pop("default_headers", {}), **_headers(caller)}
    model_info = {**AUTOGEN_MODEL_INFO, **options.pop("model_info", {})}
    return OpenAIChatCompletionClient(model=name, base_url=base_url, api_key=api_key, default_headers=headers,
                                      model_info=model_info, **_generation(temperature, max_tokens), **options)


def crewai_llm(name: str = "default", *, caller: str | None = "crewai", temperature: float | None = None,
               max_tokens: int | None = None, settings: Settings | None = None, **options: Any) -> crewai.LLM:
    """A CrewAI ``LLM`` for roost model ``name``, on CrewAI's native OpenAI-compatible provider.

    Importing CrewAI through here switches its telemetry and cloud tracing off.

    Args:
        name: alias or store name.
        caller: trace tag, e.g. ``"agents.crew/researcher"``.
        temperature: sampling temperature.
        max_tokens: cap on generated tokens per call.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: passed to ``crewai.LLM``.
    """
    _require("crewai", "crewai")
    disable_crewai_telemetry()
    from crewai import LLM

    base_url, api_key = endpoint(settings)
    headers = {**options.pop("default_headers", {}), **_headers(caller)}
    # custom_openai: CrewAI's own OpenAI client on our base_url, for any model name (no LiteLLM lookup).
    return LLM(model=name, custom_openai=True, base_url=base_url, api_key=api_key, default_headers=headers,
               **_generation(temperature, max_tokens), **options)


def disable_crewai_telemetry() -> None:
    """Turn off CrewAI's anonymous telemetry and its cloud-tracing prompt; call before importing crewai."""
    os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
    os.environ["CREWAI_DISABLE_TRACKING"] = "true"
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")  # also stops the first-run "enable tracing?" prompt
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
