"""What every graph needs around it: per-agent models, the SQLite checkpointer, structured replies.

Per-agent models: an agent named ``math`` uses, in this order, the model its
graph was given for it (``models={"math": "math-v2"}``), else the alias
``math`` when roost.toml defines one, else ``default``. So a roost.toml like ::

    [aliases.math]
    base = "smollm2-135m-instruct"
    adapter = "math-lora"

puts the supervisor's math specialist on its own adapter, while the others
share the base: all of them served by one backend from one copy of the base.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roost.errors import RoostError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.sqlite import SqliteSaver

    from roost.config import Settings

logger = logging.getLogger(__name__)

CHECKPOINTS_FILE = "checkpoints.db"
GENERATION_DEFAULTS = {"temperature": 0.2, "max_tokens": 192}
"""What an agent's calls use when neither the run's options nor its alias in roost.toml say otherwise.

The backend's own default is temperature 1.0 and up to 1024 new tokens: a 135M model
then rambles for a minute per call on 2 CPU cores. At 0.2 it stays on topic and
192 tokens hold a paragraph.
"""

Step = dict[str, Any]


def require_langgraph() -> None:
    """Fail with the install hint when the langgraph extra is missing."""
    try:
        import langchain_openai  # noqa: F401
        import langgraph  # noqa: F401
        import langgraph.checkpoint.sqlite  # noqa: F401
    except ImportError:
        raise RoostError("the graphs need LangGraph: install roost[langgraph]") from None


def model_name(agent: str, models: Mapping[str, str] | None, settings: Settings, model: str | None = None) -> str:
    """The model name or alias ``agent`` uses.

    In order: ``models[agent]``; else ``model`` (one name for every agent); else the
    roost.toml alias named after the agent; else ``default``.
    """
    if models and agent in models:
        return models[agent]
    if model:
        return model
    return agent if agent in settings.aliases else "default"


def check_agents(models: Mapping[str, Any] | None, agents: Iterable[str], target: str) -> None:
    """Refuse a models mapping that names an agent the graph does not have."""
    if models is not None and not isinstance(models, Mapping):
        raise RoostError(f"{target}: models must map agent names to model names, e.g. {{\"math\": \"math-v1\"}}")
    known = set(agents)
    unknown = sorted(set(models or {}) - known)
    if unknown:
        raise RoostError(f"{target} has no agent named {', '.join(unknown)}; its agents are "
                         f"{', '.join(sorted(known))}")


def check_options(target: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse an option the target does not take, listing those it does."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise RoostError(f"{target}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def chat_models(target: str, agents: Sequence[str], models: Mapping[str, str] | None = None, *,
                model: str | None = None, settings: Settings | None = None,
                **options: Any) -> dict[str, BaseChatModel]:
    """One LangChain chat model per agent, each tagged ``TARGET/AGENT`` in the trace store.

    Args:
        target: the graph's dotted name, the first half of each caller tag.
        agents: the agents that need a model.
        models: model name or alias per agent (see :func:`model_name`).
        model: one model name or alias for every agent not in ``models``.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: ``temperature``, ``max_tokens`` and other :func:`roost.clients.langchain_chat` options;
            unset ones fall back to the alias's defaults, then :data:`GENERATION_DEFAULTS`.
    """
    from roost.clients import langchain_chat
    from roost.config import load_settings

    check_agents(models, agents, target)
    settings = settings or load_settings()
    options = {k: v for k, v in options.items() if v is not None}
    out = {}
    for agent in agents:
        name = model_name(agent, models, settings, model)
        out[agent] = langchain_chat(name, caller=f"{target}/{agent}", settings=settings,
                                    **{**generation_defaults(name, settings), **options})
    return out


def generation_defaults(name: str, settings: Settings) -> dict[str, Any]:
    """:data:`GENERATION_DEFAULTS` less what the alias ``name`` sets itself (the backend applies those)."""
    alias = settings.alias(name)
    return {k: v for k, v in GENERATION_DEFAULTS.items() if alias is None or getattr(alias, k) is None}


# checkpoints -------------------------------------------------------------------------


def checkpoints_path(settings: Settings | None = None) -> Path:
    """The SQLite checkpoint database: ``checkpoints.db`` in the store home."""
    from roost.config import load_settings
    from roost.store import Store

    return Store((settings or load_settings()).home).home / CHECKPOINTS_FILE


@contextmanager
def sqlite_checkpointer(path: Path | str | None = None) -> Iterator[SqliteSaver]:
    """A LangGraph SqliteSaver on ``path`` (default :func:`checkpoints_path`), closed on exit."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path) if path is not None else checkpoints_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False: LangGraph runs sync nodes in worker threads; SqliteSaver locks around each use.
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


# structured replies ---------------------------------------------------------------------


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for JSON that matches ``schema``; the backend constrains decoding to it."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def structured_reply(model: BaseChatModel, messages: Sequence[Any], name: str, schema: dict[str, Any],
                     max_tokens: int) -> str:
    """The text of ``model``'s reply when asked for JSON matching ``schema``, at most ``max_tokens`` long.

    Under a constrained backend the reply is that JSON. An unconstrained model may
    instead run to the token cap, which the openai client reports as an error; its
    truncated text is returned then, for the caller's defensive reading.
    """
    try:
        from openai import LengthFinishReasonError
    except ImportError:  # a non-OpenAI chat model: no such error to expect
        LengthFinishReasonError = ()  # type: ignore[assignment]  # noqa: N806

    bound = model.bind(response_format=json_schema_format(name, schema), max_tokens=max_tokens)
    try:
        return str(bound.invoke(list(messages)).content)
    except LengthFinishReasonError as exc:  # type: ignore[misc]
        text = exc.completion.choices[0].message.content or ""
        logger.warning("the %s reply hit the %d-token cap before its JSON closed: %r", name, max_tokens, text[:200])
        return text


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (a model may wrap it in prose or a code fence), or None."""
    text = text.strip()
    candidates = [text]
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        candidates.append(match.group(0))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pick_choice(text: str, key: str, allowed: Sequence[str]) -> tuple[str | None, bool]:
    """The ``allowed`` value that ``text`` chooses, and whether it came as the JSON asked for.

    The JSON path is what a constrained backend always gives. Otherwise the first
    allowed word the text mentions is taken, which keeps an unconstrained small
    model useful; that fallback is logged. ``(None, False)`` when neither works.
    """
    data = parse_json_object(text)
    if data is not None and data.get(key) in allowed:
        return str(data[key]), True
    lowered = text.lower()
    found = [(m.start(), name) for name in allowed
             if (m := re.search(rf"\b{re.escape(name.lower())}\b", lowered)) is not None]
    if found:
        choice = min(found)[1]
        logger.warning("reply was not the JSON asked for; read '%s' from its words: %r", choice, text[:200])
        return choice, False
    return None, False


def as_decision(value: Any) -> bool:
    """A human's answer to an approval question as a bool: True/False, yes/no, approve/reject, y/n."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping) and "approved" in value:
        return as_decision(value["approved"])
    if isinstance(value, str):
        word = value.strip().lower()
        if word in {"y", "yes", "approve", "approved", "ok", "true"}:
            return True
        if word in {"n", "no", "reject", "rejected", "false"}:
            return False
    raise RoostError(f"cannot read {value!r} as an approval: answer yes or no (approve / reject)")


# running -------------------------------------------------------------------------------------


def stream_steps(graph: Any, command: Any, config: dict[str, Any], on_step: Callable[[Step], None] | None) -> None:
    """Run ``graph`` on ``command``, reporting each node's update (subgraphs' too) to ``on_step`` as it ends."""
    started = time.perf_counter()
    for namespace, update in graph.stream(command, config, stream_mode="updates", subgraphs=True):
        if on_step is None:
            continue
        prefix = "/".join(part.split(":")[0] for part in namespace)
        for node, values in update.items():
            if node == "__interrupt__":
                step = {"kind": "interrupt", "name": prefix or graph.name,
                        "output": [i.value for i in values]}
            else:
                step = {"kind": "node", "name": f"{prefix}/{node}" if prefix else node,
                        "output": describe_update(values)}
            on_step({**step, "seconds": round(time.perf_counter() - started, 3)})


def describe_update(update: Any) -> Any:
    """A node's state update in a form a person reads: message text, tool calls, or the plain values."""
    if not isinstance(update, Mapping):
        return update
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key == "messages":
            out[key] = [describe_message(m) for m in value]
        else:
            out[key] = value
    if set(out) == {"messages"} and len(out["messages"]) == 1:
        return out["messages"][0]
    return out


def describe_message(message: Any) -> str:
    """``calculator(expression='2+2')`` for a tool call, ``-> 4`` for a tool result, else the text."""
    calls = getattr(message, "tool_calls", None)
    if calls:
        return "; ".join(f"{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['args'].items())})" for c in calls)
    if getattr(message, "type", "") == "tool":
        return f"{message.name} -> {message.content}"
    return str(getattr(message, "content", message))


PAUSED = object()
"""What :func:`first_command` returns for a run paused at an interrupt and given no answer for it."""


def first_command(graph: Any, config: dict[str, Any], fresh: Callable[[], Any], decision: Any = None) -> Any:
    """The first thing to stream for this thread id.

    A new thread gets ``fresh()`` (the input). A thread paused at an interrupt gets
    ``Command(resume=decision)``, or :data:`PAUSED` when there is no decision yet.
    A thread that stopped half-way (a crash, a killed process) gets ``None``, which
    makes LangGraph continue from its last checkpoint.

    Raises:
        RoostError: the thread has already finished.
    """
    from langgraph.types import Command

    snapshot = graph.get_state(config)
    thread_id = config["configurable"]["thread_id"]
    if snapshot.interrupts:
        return Command(resume=decision) if decision is not None else PAUSED
    if snapshot.next:
        logger.info("thread '%s' stopped before %s; continuing it", thread_id, ", ".join(snapshot.next))
        return None
    if snapshot.values:
        raise RoostError(f"thread '{thread_id}' has already finished; start a new run without a thread id")
    return fresh()


def pending_interrupt(graph: Any, config: dict[str, Any]) -> Any | None:
    """The value of the interrupt the thread waits on, or None when it waits on none."""
    interrupts = graph.get_state(config).interrupts
    return interrupts[0].value if interrupts else None


def new_thread_id() -> str:
    """A fresh thread id for a run that was given none."""
    return uuid.uuid4().hex[:12]
