"""A CrewAI crew: a researcher looks a roost term up with a tool, then a writer explains it; with memory.

Sequential process, two agents, each on its own model (``researcher``,
``writer``: see :func:`agents.tools.model_name`). The crew has CrewAI's unified
memory, fully local: vectors come from the backend's ``/v1/embeddings``
(all-MiniLM-L6-v2, through CrewAI's OpenAI-compatible embedder pointed at the
backend), records live in LanceDB under ``STORE_HOME/crews/memory``, and the
memory's own analysis calls go to the backend too (tagged ``agents.crew/memory``).
Telemetry and tracing are off; no key for a hosted service is used anywhere.

Every tool call's outcome is counted from CrewAI's event bus, so a run reports
its tool-call errors (``tool_errors``) instead of hiding them in retries.

Example:
    >>> from agents import crew
    >>> crew.run("caller tag", on_step=print)["answer"]
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.tools import args_model, check_agents, check_options, generation_options, lookup_term, model_name
from roost.backend.embeddings import Embedder
from roost.errors import RoostError

if TYPE_CHECKING:
    from crewai import Crew
    from crewai.llms.base_llm import BaseLLM
    from crewai.memory.unified_memory import Memory

    from roost.config import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = "CrewAI crew: a researcher looks a roost term up with a tool, a writer explains it; local memory."
AGENTS = ("researcher", "writer")
MEMORY_AGENT = "memory"
MEMORY_MAX_TOKENS = 64
"""Reply cap for the memory's own analysis calls (``memory_max_tokens`` overrides it).

CrewAI's memory asks its LLM for JSON (the memories in a text, a scope, a merge
plan). SmolLM2-135M fills any budget without closing that JSON: measured, 5 calls
of 96 tokens each per run, 14 s apiece, all ending at the cap. CrewAI then stores
the raw text, which is what it falls back to anyway; 64 tokens get there sooner.
"""
EMBEDDING_MODEL = Embedder.name
EMBEDDING_DIM = Embedder.dimensions
LLM_OPTIONS = ("temperature", "max_tokens")

Step = dict[str, Any]
OnStep = Callable[[Step], None]


def require_crewai() -> None:
    """Switch CrewAI's telemetry off, then fail with the install hint when the crewai extra is missing."""
    from roost.clients import disable_crewai_telemetry

    disable_crewai_telemetry()
    try:
        import crewai  # noqa: F401
    except ImportError:
        raise RoostError("the crew needs CrewAI: install roost[crewai]") from None


def embedder_config(settings: Settings | None = None) -> dict[str, Any]:
    """CrewAI's embedder spec for the backend's ``/v1/embeddings`` (starting the backend when none answers)."""
    from roost.clients import endpoint

    base_url, api_key = endpoint(settings)
    return {"provider": "openai", "config": {"api_key": api_key, "api_base": base_url, "model_name": EMBEDDING_MODEL}}


def memory_path(settings: Settings | None = None) -> Path:
    """Where the crew's LanceDB memory lives: ``crews/memory`` in the store home."""
    from roost.config import load_settings

    return (settings or load_settings()).home / "crews" / "memory"


def local_memory(llm: BaseLLM, settings: Settings | None = None, path: Path | None = None) -> Memory:
    """CrewAI's unified memory on local embeddings and a LanceDB folder in the store home.

    The LanceDB table is made for the backend's embedding width (:data:`EMBEDDING_DIM`): left
    to itself, CrewAI creates it at OpenAI's 3072 when the first operation is a recall, and every
    later save and search then fails. A folder holding vectors of another width (made by another
    embedder) is moved aside, not deleted, with a warning that says where it went.
    """
    from crewai.memory.storage.lancedb_storage import LanceDBStorage
    from crewai.memory.unified_memory import Memory

    path = path or memory_path(settings)
    _set_aside_other_widths(path)
    path.mkdir(parents=True, exist_ok=True)
    storage = LanceDBStorage(path=str(path), vector_dim=EMBEDDING_DIM)
    return Memory(llm=llm, storage=storage, embedder=embedder_config(settings))


def _set_aside_other_widths(path: Path) -> None:
    """Rename ``path`` to ``path.<width>d-<time>`` when its memories table holds vectors of another width."""
    if not (path / "memories.lance").exists():
        return
    import lancedb

    try:
        field = lancedb.connect(str(path)).open_table("memories").schema.field("vector")
        width = field.type.list_size
    except Exception:  # unreadable or another layout: leave it to CrewAI, which says what is wrong
        return
    if width == EMBEDDING_DIM:
        return
    aside = path.with_name(f"{path.name}.{width}d-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    logger.warning("the crew memory at %s holds %d-dimensional vectors, not the backend's %d: moved it to %s and "
                   "starting a new one", path, width, EMBEDDING_DIM, aside)


def crew_tool(func: Callable[..., Any]) -> Any:
    """A CrewAI tool for ``func`` with its full argument schema (see :func:`agents.tools.args_model`)."""
    from crewai.tools import BaseTool

    class FunctionArgsTool(BaseTool):
        def _run(self, **kwargs: Any) -> Any:
            return func(**kwargs)

    return FunctionArgsTool(name=func.__name__, description=inspect.getdoc(func) or func.__name__,
                            args_schema=args_model(func))


def require_tool_first(tool: str) -> Any:
    """A CrewAI transport interceptor: an agent's call that offers ``tool`` must call it, unless a tool just answered.

    CrewAI always sends ``tool_choice="auto"``, and a 135M model given the choice
    answers from memory instead of looking the term up. This turns ``auto`` into
    the named ``tool`` until a tool result is the last message, the way the ReAct
    graph forces its first step (graphs/react.py). Interceptors are CrewAI's own
    hook for rewriting an LLM's HTTP requests.
    """
    import httpx
    from crewai.llms.hooks.base import BaseInterceptor

    class RequireToolFirst(BaseInterceptor[httpx.Request, httpx.Response]):
        def on_outbound(self, message: httpx.Request) -> httpx.Request:
            if not message.url.path.endswith("/chat/completions"):
                return message
            body = json.loads(message.content or b"{}")
            names = [t.get("function", {}).get("name") for t in body.get("tools") or []]
            last = (body.get("messages") or [{}])[-1].get("role")
            if tool not in names or body.get("tool_choice") != "auto" or last == "tool":
                return message
            body["tool_choice"] = {"type": "function", "function": {"name": tool}}
            body["parallel_tool_calls"] = False  # asked for calls, a 135M model writes the same one three times
            content = json.dumps(body).encode()
            headers = {k: v for k, v in message.headers.items() if k.lower() != "content-length"}
            return httpx.Request(message.method, message.url, headers=headers, content=content,
                                 extensions=message.extensions)

        def on_inbound(self, message: httpx.Response) -> httpx.Response:
            return message

        async def aon_outbound(self, message: httpx.Request) -> httpx.Request:
            return self.on_outbound(message)

        async def aon_inbound(self, message: httpx.Response) -> httpx.Response:
            return message

    return RequireToolFirst()


def build(llms: Mapping[str, BaseLLM], *, memory: Memory | None = None) -> Crew:
    """The crew over ``llms["researcher"]`` and ``llms["writer"]``; ``memory`` is shared by both agents."""
    from crewai import Agent, Crew, Process, Task

    missing = [a for a in AGENTS if a not in llms]
    if missing:
        raise ValueError(f"the crew needs an LLM for {', '.join(missing)}")
    lookup = crew_tool(lookup_term)
    # max_iter bounds each agent's think/act loop: a small model that never settles still finishes.
    researcher = Agent(role="Researcher", goal="Find what roost's glossary says about {topic}.",
                       backstory="You check facts in roost's glossary before anything is written.",
                       tools=[lookup], llm=llms["researcher"], allow_delegation=False, max_iter=3, verbose=False)
    writer = Agent(role="Writer", goal="Explain {topic} to a new roost user in plain words.",
                   backstory="You turn a researcher's notes into one short, clear paragraph.",
                   llm=llms["writer"], allow_delegation=False, max_iter=2, verbose=False)
    research = Task(description="Look up '{topic}' with the lookup_term tool and report what the glossary says.",
                    expected_output="The glossary's definition of {topic}, in one or two sentences.",
                    agent=researcher)
    write = Task(description="Using the researcher's notes, explain '{topic}' to a new roost user.",
                 expected_output="One paragraph of at most 80 words.", agent=writer, context=[research])
    return Crew(agents=[researcher, writer], tasks=[research, write], process=Process.sequential,
                memory=memory if memory is not None else False, verbose=False)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, llms: Mapping[str, BaseLLM] | None = None,
        models: Mapping[str, str] | None = None, model: str | None = None, memory: bool = True,
        memory_max_tokens: int | None = MEMORY_MAX_TOKENS, **options: Any) -> dict[str, Any]:
    """Run the crew on a topic (a string, or ``{"topic": ...}``) and return the writer's paragraph.

    Args:
        input: the roost term to explain, e.g. ``"caller tag"``.
        on_step: called with each task start and end, tool call and memory operation as it happens.
        llms: a CrewAI LLM per agent; default: :func:`roost.clients.crewai_llm` per agent's model.
        models: model name or alias per agent (``researcher``, ``writer``, ``memory``).
        model: one model name or alias for every agent not in ``models``.
        memory: give the crew its local memory.
        memory_max_tokens: reply cap for the memory's analysis calls (see :data:`MEMORY_MAX_TOKENS`); None
            leaves it to ``max_tokens``.
        **options: ``temperature``, ``max_tokens`` for every agent.

    Returns:
        ``answer`` (the writer's paragraph), ``research`` (the researcher's report),
        ``tool_calls`` and ``tool_errors`` (counted from CrewAI's events), ``memories`` (records stored).
    """
    require_crewai()
    check_options(__name__, options, LLM_OPTIONS)
    check_agents(__name__, models, (*AGENTS, MEMORY_AGENT))
    topic = input.get("topic", "") if isinstance(input, dict) else input
    if not str(topic).strip():
        raise ValueError(f"{__name__} needs a topic, e.g. 'caller tag'")
    from roost.config import load_settings

    settings = load_settings()
    if llms is None:
        from roost.clients import crewai_llm

        llms = {}
        for agent in (*AGENTS, MEMORY_AGENT):
            name = model_name(agent, models, settings, model)
            generation = generation_options(name, settings, options)
            if agent == MEMORY_AGENT and memory_max_tokens is not None:
                generation["max_tokens"] = memory_max_tokens
            extra = {"interceptor": require_tool_first("lookup_term")} if agent == "researcher" else {}
            llms[agent] = crewai_llm(name, caller=f"{__name__}/{agent}", settings=settings, **generation, **extra)
    shared = local_memory(llms.get(MEMORY_AGENT, llms["researcher"]), settings) if memory else None
    crew = build(llms, memory=shared)

    events = _EventSteps(on_step)
    with events.listening():
        output = crew.kickoff(inputs={"topic": str(topic)})
        if shared is not None:
            shared.drain_writes()  # saves run in a background thread; count them once they are in
    from roost.prompts import TOOL_CALL_OPEN

    # A call the model wrote as text, which the backend never turned into a structured one, is an error too.
    unparsed = sum(TOOL_CALL_OPEN in task.raw for task in output.tasks_output)
    return {
        "answer": output.raw.strip(),
        "research": output.tasks_output[0].raw.strip() if output.tasks_output else "",
        "tool_calls": events.tool_calls,
        "tool_errors": events.tool_errors + unparsed,
        "memories": events.memories,
    }


class _EventSteps:
    """Turns CrewAI's events into roost steps and counts tool calls, tool errors and saved memories."""

    def __init__(self, on_step: OnStep | None) -> None:
        self.on_step = on_step
        self.tool_calls = 0
        self.tool_errors = 0
        self.memories = 0
        self.started = time.perf_counter()

    def emit(self, kind: str, name: str, output: Any) -> None:
        if self.on_step is not None:
            self.on_step({"kind": kind, "name": name or "", "output": output,
                          "seconds": round(time.perf_counter() - self.started, 3)})

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Handle CrewAI's events for the duration of the block, then drop these handlers again."""
        from crewai.events.event_bus import crewai_event_bus
        from crewai.events.types.memory_events import MemorySaveCompletedEvent, MemorySaveFailedEvent
        from crewai.events.types.task_events import TaskCompletedEvent, TaskStartedEvent
        from crewai.events.types.tool_usage_events import (
            ToolSelectionErrorEvent,
            ToolUsageErrorEvent,
            ToolUsageFinishedEvent,
            ToolValidateInputErrorEvent,
        )

        def task_started(source: Any, event: TaskStartedEvent) -> None:
            self.emit("task_started", getattr(getattr(event.task, "agent", None), "role", ""),
                      getattr(event.task, "description", ""))

        def task_completed(source: Any, event: TaskCompletedEvent) -> None:
            self.emit("task", event.output.agent, event.output.raw)

        def tool_finished(source: Any, event: ToolUsageFinishedEvent) -> None:
            self.tool_calls += 1
            self.emit("tool_call", event.agent_role, {"tool": event.tool_name, "args": event.tool_args,
                                                      "result": str(event.output)})

        def tool_failed(source: Any, event: Any) -> None:
            self.tool_calls += 1
            self.tool_errors += 1
            self.emit("tool_error", event.agent_role, {"tool": event.tool_name, "args": event.tool_args,
                                                       "error": str(event.error)})

        def memory_saved(source: Any, event: MemorySaveCompletedEvent) -> None:
            self.memories += 1
            self.emit("memory_saved", "memory", event.value)

        def memory_failed(source: Any, event: MemorySaveFailedEvent) -> None:
            self.emit("memory_error", "memory", event.error)

        handlers = [(TaskStartedEvent, task_started), (TaskCompletedEvent, task_completed),
                    (ToolUsageFinishedEvent, tool_finished), (ToolUsageErrorEvent, tool_failed),
                    (ToolValidateInputErrorEvent, tool_failed), (ToolSelectionErrorEvent, tool_failed),
                    (MemorySaveCompletedEvent, memory_saved), (MemorySaveFailedEvent, memory_failed)]
        with crewai_event_bus.scoped_handlers():
            for event_type, handler in handlers:
                crewai_event_bus.register_handler(event_type, handler)
            yield
