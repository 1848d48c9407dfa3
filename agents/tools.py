"""Plain-Python tools the teams and crews give their agents, and the per-agent model rule they share.

The tools are ordinary typed functions, so each framework wraps them its own way
(AutoGen's ``FunctionTool``, CrewAI's ``@tool``); their JSON schemas come from
the type hints, and the backend decodes every call's arguments under that schema.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, create_model

from roost.errors import RoostError

if TYPE_CHECKING:
    from roost.config import Settings

GLOSSARY = {
    "adapter": "A LoRA fine-tune stored next to its base; the backend serves many adapters over one copy of the base.",
    "alias": "A short model name in roost.toml that maps to a base, an optional adapter and generation defaults.",
    "backend": "One OpenAI-compatible server that batches every program's, graph's, team's and crew's calls.",
    "base": "A full model in the store, such as SmolLM2-135M-Instruct, that adapters are trained on.",
    "caller tag": "The X-Roost-Caller header naming the system and agent that made a call, kept in each trace.",
    "checkpoint": "A saved step of a LangGraph run in checkpoints.db; a run resumes from it by its thread id.",
    "embeddings": "Sentence vectors from all-MiniLM-L6-v2 at /v1/embeddings, used for search and crew memory.",
    "lora": "Low-rank adaptation: small trained matrices added to a frozen base model's layers.",
    "trace": "The record of one backend call: model, adapter, messages, output, tokens, latency and caller tag.",
}


# Argument schemas the backend decodes tool calls under: a 135M model free to write any string writes "" or
# punctuation; held to letters it writes a term (see graphs/tools.py for the measurement).
TERM = Field(description="the roost term, e.g. adapter", pattern=r"^[A-Za-z][A-Za-z -]*$", min_length=2,
             max_length=40)
TEXT = Field(description="the draft to count", min_length=1, max_length=240)  # a call stays under ~90 tokens


def lookup_term(term: Annotated[str, TERM]) -> str:
    """Look a roost term up in the glossary (adapter, alias, backend, base, caller tag, checkpoint, ...)."""
    key = " ".join(re.sub(r"[^a-z ]", " ", term.lower()).split())
    for candidate in (key, key.removesuffix("s")):
        if candidate in GLOSSARY:
            return f"{candidate}: {GLOSSARY[candidate]}"
    near = [name for name in GLOSSARY if name in key or key in name]
    if near:
        return "\n".join(f"{name}: {GLOSSARY[name]}" for name in near)
    return f"'{term}' is not in the glossary; known terms: {', '.join(GLOSSARY)}"


def count_words(text: Annotated[str, TEXT]) -> int:
    """Count the words in a text, to check a draft against a word limit."""
    return len(text.split())


GENERATION_DEFAULTS = {"temperature": 0.2, "max_tokens": 192}
"""What an agent's calls use when neither the run's options nor its alias in roost.toml say otherwise.

The backend's own default is temperature 1.0 and up to 1024 new tokens: a 135M model
then rambles for a minute per call on 2 CPU cores. At 0.2 it stays on topic and
192 tokens hold a paragraph.
"""


def args_model(func: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of ``func``'s arguments that keeps each ``Annotated`` ``Field`` (pattern, lengths).

    The frameworks' own function wrappers drop those constraints (AutoGen keeps only a
    description) or cannot resolve postponed annotations (CrewAI); this model gives
    each of them the full schema, which the backend then decodes calls under.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    hints.pop("return", None)
    return create_model(f"{func.__name__}_args", **{name: (hint, ...) for name, hint in hints.items()})


def model_name(agent: str, models: Mapping[str, str] | None, settings: Settings, model: str | None = None) -> str:
    """The model ``agent`` uses: ``models[agent]``, else ``model`` (one for all), else the roost.toml alias
    named after the agent, else ``default``."""
    if models and agent in models:
        return models[agent]
    if model:
        return model
    return agent if agent in settings.aliases else "default"


def generation_options(name: str, settings: Settings, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (temperature, max_tokens) over :data:`GENERATION_DEFAULTS`, leaving out what alias ``name`` sets."""
    alias = settings.alias(name)
    defaults = {k: v for k, v in GENERATION_DEFAULTS.items() if alias is None or getattr(alias, k) is None}
    return {**defaults, **{k: v for k, v in options.items() if v is not None}}


def check_options(target: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse an option the target does not take, listing those it does."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise RoostError(f"{target}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def check_agents(target: str, models: Mapping[str, Any] | None, agents: Iterable[str]) -> None:
    """Refuse a ``models`` mapping that names an agent the system does not have."""
    known = set(agents)
    unknown = sorted(set(models or {}) - known)
    if unknown:
        raise RoostError(f"{target} has no agent named {', '.join(unknown)}; its agents are {', '.join(sorted(known))}")
