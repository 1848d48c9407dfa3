"""A multi-LLM supervisor: a router model sends the question to specialists, each on its own model, until done.

The team: ``math`` (a ReAct agent with the calculator) and ``researcher`` (a
ReAct agent with search over :data:`graphs.tools.DOCS_DIR`) are the specialists;
the ``router`` picks who acts next, and on ``FINISH`` the ``writer`` turns their
notes into the answer. The router's choice is structured output, JSON
``{"next": NAME}``, and three rules make it robust on a 135M model:

- NAME is a JSON-schema ``enum``; the backend decodes under that schema, so the
  reply always parses (an unconstrained reply is read defensively: see
  :func:`graphs.runtime.pick_choice`; each such fallback is counted);
- a specialist who has answered leaves the enum, so the loop cannot cycle and
  ends after at most one turn per specialist;
- ``FINISH`` is offered only once a specialist has answered.

Each specialist is one model call that must call its tool; its note is the
tool's answer as a fact (``12 * 7 = 84``). Asked to restate a tool's answer, a
135M model mostly copies it, at ~10 s a call here; the writer does the one
restating, from the facts listed before the question (the order SmolLM2-135M
answered best from, of the three tried).

Before the answer is published the graph stops at a human-in-the-loop
interrupt (node ``finish``); resume it with ``Command(resume=True|False)`` on the
same thread id. With the SQLite checkpointer that works across processes.

Example:
    >>> with sqlite_checkpointer() as saver:
    ...     graph = build(chat_models("graphs.supervisor", AGENTS), search, checkpointer=saver)
    ...     graph.invoke({"question": "What is 12 * 7?"}, {"configurable": {"thread_id": "t1"}})
    ...     graph.invoke(Command(resume=True), {"configurable": {"thread_id": "t1"}})
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from graphs import react
from graphs.runtime import (
    PAUSED,
    Step,
    as_decision,
    chat_models,
    check_options,
    checkpoints_path,
    first_command,
    new_thread_id,
    pending_interrupt,
    pick_choice,
    require_langgraph,
    sqlite_checkpointer,
    stream_steps,
    structured_reply,
)
from graphs.tools import DOCS_DIR, DocSearch, backend_embeddings, calculator_tool, search_tool
from roost.config import load_settings
from roost.errors import RoostError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)

OnStep = Callable[[Step], None]

DESCRIPTION = "LangGraph supervisor: a router sends the question to math and research agents, a writer answers."
RUN_OPTIONS = ("model", "models", "temperature", "max_tokens", "thread_id", "approve", "approval", "docs")
SPECIALISTS = ("math", "researcher")
AGENTS = ("router", *SPECIALISTS, "writer")
FINISH = "FINISH"
ROUTER_MAX_TOKENS = 32  # {"next": "researcher"} is 9 tokens; the cap only bites an unconstrained reply

ROLES = {
    "math": "computes arithmetic exactly with a calculator",
    "researcher": "looks facts about roost up in its documentation",
}
ROUTER_SYSTEM = (
    "You lead a team: {roles}. Pick who acts next. Answer FINISH once the notes hold what the question needs; "
    "a writer then answers it. "
    'Reply with JSON only: {{"next": "<one of {choices}>"}}.'
)
MATH_SYSTEM = "You are the math specialist. Call the calculator with the arithmetic expression from the question."
RESEARCHER_SYSTEM = "You are the researcher. Call search_docs with the key words of the question."
WRITER_SYSTEM = ("You are the writer. Answer the user's question in two or three clear sentences, using only the "
                 "facts given.")
NOTE_FORMATS = {"calculator": "{expression} = {result}", "search_docs": "{result}"}
"""How a tool call becomes a specialist's note: a fact the writer can use as it stands."""


class SupervisorState(TypedDict, total=False):
    """The graph's state; ``notes`` holds ``(specialist, text)`` pairs in the order they spoke."""

    question: str
    notes: Annotated[list[tuple[str, str]], operator.add]
    next: str
    route_fallbacks: Annotated[int, operator.add]
    answer: str
    approved: bool


def build(models: Mapping[str, BaseChatModel], search: DocSearch, *, approval: bool = True,
          checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """Compile the supervisor graph.

    Args:
        models: a chat model per agent (``router``, ``math``, ``researcher``, ``writer``);
            :func:`graphs.runtime.chat_models` builds them from names.
        search: the researcher's documents.
        approval: stop for a human's approval before publishing (needs a ``checkpointer``).
        checkpointer: saves every step by thread id (see :func:`graphs.runtime.sqlite_checkpointer`).
    """
    from langchain_core.messages import HumanMessage, SystemMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    missing = [a for a in AGENTS if a not in models]
    if missing:
        raise ValueError(f"the supervisor needs a model for {', '.join(missing)}")
    if approval and checkpointer is None:
        raise ValueError("a human-approval step needs a checkpointer to pause and resume the run")
    math_agent = react.build(models["math"], [calculator_tool()], system=MATH_SYSTEM, stop_after_tools=True,
                             name="math")
    researcher_agent = react.build(models["researcher"], [search_tool(search)], system=RESEARCHER_SYSTEM,
                                   stop_after_tools=True, name="researcher")

    def route(state: SupervisorState) -> dict[str, Any]:
        spoken = {who for who, _ in state.get("notes", [])}
        choices = [s for s in SPECIALISTS if s not in spoken] + ([FINISH] if spoken else [])
        if choices == [FINISH]:
            return {"next": FINISH}
        schema = {"type": "object", "properties": {"next": {"type": "string", "enum": choices}},
                  "required": ["next"], "additionalProperties": False}
        roles = "; ".join(f"{s} {ROLES[s]}" for s in SPECIALISTS)
        system = ROUTER_SYSTEM.format(roles=roles, choices=", ".join(choices))
        # Naming who has not been asked turns SmolLM2-135M's pick for "12 * 7 and resuming" from FINISH (3 of 3)
        # to math (3 of 3) after the researcher, and it still says FINISH when math has nothing to add.
        unasked = [s for s in SPECIALISTS if s not in spoken]
        brief = _brief(state) + (f"\nNot asked yet: {', '.join(unasked)}." if unasked else "")
        reply = structured_reply(models["router"], [SystemMessage(system), HumanMessage(brief)], "route",
                                 schema, ROUTER_MAX_TOKENS)
        choice, exact = pick_choice(reply, "next", choices)
        if choice is None:
            choice = choices[0]  # an unreadable reply consults the next specialist in order: the loop still ends
            logger.warning("router reply named no choice of %s; sending it to %s: %r", choices, choice, reply[:200])
        return {"next": choice, "route_fallbacks": int(not exact)}

    def run_react(agent: CompiledStateGraph, name: str, state: SupervisorState) -> dict[str, Any]:
        messages = agent.invoke({"messages": [HumanMessage(_brief(state))]})["messages"]
        results = {m.tool_call_id: m.content for m in messages if m.type == "tool"}
        calls = [c for m in messages if m.type == "ai" for c in m.tool_calls]
        if not calls:  # a model that answered without its tool: its words are the note
            return {"notes": [(name, str(messages[-1].content).strip())]}
        note = "\n".join(NOTE_FORMATS.get(c["name"], "{result}").format(**c["args"], result=results.get(c["id"], ""))
                         for c in calls)
        return {"notes": [(name, note)]}

    def math(state: SupervisorState) -> dict[str, Any]:
        return run_react(math_agent, "math", state)

    def researcher(state: SupervisorState) -> dict[str, Any]:
        return run_react(researcher_agent, "researcher", state)

    def writer(state: SupervisorState) -> dict[str, Any]:
        facts = "\n".join(f"- {text}" for _, text in state.get("notes", []))
        prompt = f"Facts:\n{facts}\n\nQuestion: {state['question']}"
        reply = models["writer"].invoke([SystemMessage(WRITER_SYSTEM), HumanMessage(prompt)])
        answer = str(reply.content).strip()
        return {"notes": [("writer", answer)], "answer": answer}

    def finish(state: SupervisorState) -> dict[str, Any]:
        answer = state.get("answer", "")
        if not approval:
            return {"answer": answer, "approved": True}
        decision = interrupt({"question": "Publish this answer?", "answer": answer})
        return {"answer": answer, "approved": as_decision(decision)}

    graph = StateGraph(SupervisorState)
    graph.add_node("router", route)
    graph.add_node("math", math)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_node("finish", finish)
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", lambda s: s["next"], {**{s: s for s in SPECIALISTS}, FINISH: "writer"})
    for specialist in SPECIALISTS:
        graph.add_edge(specialist, "router")
    graph.add_edge("writer", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name="supervisor")


def _brief(state: SupervisorState) -> str:
    """The question and the notes so far, as one user message (small models follow one message best)."""
    lines = [f"Question: {state['question']}"]
    for who, text in state.get("notes", []):
        lines.append(f"Note from {who}: {text}")
    return "\n".join(lines)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Answer a question (a string, or ``{"question": ...}``) with the team, pausing for approval at the end.

    Options: ``model`` (one model for every agent), ``models`` (``{"math": "math-v1", ...}``),
    ``temperature``, ``max_tokens``, ``thread_id`` (resume that run), ``approve`` (``True``/``False``
    answers the approval question; unset, a run that reaches it returns ``status: "paused"``),
    ``approval`` (``False`` skips the question), ``docs`` (a folder of ``*.md`` files to search).

    Returns:
        ``status`` (``"done"`` or ``"paused"``), ``thread_id``, ``answer``, and when done ``approved``,
        ``specialists`` (who spoke, in order) and ``route_fallbacks`` (router replies that were not the JSON
        asked for); when paused, ``question``.
    """
    require_langgraph()
    from langgraph.types import Command

    check_options(__name__, options, RUN_OPTIONS)
    thread_id = str(options.get("thread_id") or new_thread_id())
    config = {"configurable": {"thread_id": thread_id}}
    settings = load_settings()
    models = chat_models(__name__, AGENTS, options.get("models"), model=options.get("model"), settings=settings,
                         temperature=options.get("temperature"),
                         max_tokens=options.get("max_tokens"))
    search = DocSearch(options.get("docs") or DOCS_DIR, backend_embeddings(settings))
    approve = options.get("approve")
    with sqlite_checkpointer(checkpoints_path(settings)) as saver:
        graph = build(models, search, approval=options.get("approval", True), checkpointer=saver)
        command = first_command(graph, config, lambda: {"question": _question(input)}, approve)
        while True:
            if command is not PAUSED:
                stream_steps(graph, command, config, on_step)
            pending = pending_interrupt(graph, config)
            if pending is None:
                break
            if approve is None:
                return {"status": "paused", "thread_id": thread_id, "question": pending["question"],
                        "answer": pending["answer"]}
            command = Command(resume=as_decision(approve))
        state = graph.get_state(config).values
    return {"status": "done", "thread_id": thread_id, "answer": state.get("answer", ""),
            "approved": state.get("approved"), "specialists": [who for who, _ in state.get("notes", [])],
            "route_fallbacks": state.get("route_fallbacks", 0)}


def _question(input: str | dict[str, Any]) -> str:
    question = input.get("question", "") if isinstance(input, dict) else input
    if not str(question).strip():
        raise RoostError(f"{__name__} needs a question, e.g. 'What is 12 * 7, and how do I resume a run?'")
    return str(question)
