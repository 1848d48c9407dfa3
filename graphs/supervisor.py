"""A multi-LLM supervisor: a router model sends the question to specialists, each on its own model, until done.

The team: ``math`` (a ReAct agent with the calculator), ``researcher`` (a ReAct
agent with search over :data:`graphs.tools.DOCS_DIR`) and ``writer`` (writes the
final answer from the others' notes). The ``router`` picks the next specialist
as structured output, JSON ``{"next": NAME}`` where NAME is one of the
specialists who have not spoken yet or ``FINISH``. Three rules make that robust
on a 135M model:

- the choice is a JSON-schema ``enum``; the backend decodes under that schema,
  so the reply always parses (an unconstrained reply is read defensively: see
  :func:`graphs.runtime.pick_choice`; each such fallback is counted);
- a specialist who has answered leaves the enum, so the loop cannot cycle and
  ends after at most one turn per specialist;
- ``FINISH`` is offered only once someone has answered.

Before the answer is published the graph stops at a human-in-the-loop
interrupt (``approve``); resume it with ``Command(resume=True|False)`` on the
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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from graphs import react
from graphs.runtime import as_decision, json_schema_format, pick_choice
from graphs.tools import DocSearch, calculator_tool, search_tool

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)

SPECIALISTS = ("math", "researcher", "writer")
AGENTS = ("router", *SPECIALISTS)
FINISH = "FINISH"

ROLES = {
    "math": "computes arithmetic exactly with a calculator",
    "researcher": "looks facts about roost up in its documentation",
    "writer": "writes the final answer from the notes",
}
ROUTER_SYSTEM = (
    "You lead a team: {roles}. Pick who acts next. Answer FINISH once the notes answer the question. "
    'Reply with JSON only: {{"next": "<one of {choices}>"}}.'
)
MATH_SYSTEM = ("You are the math specialist. Call the calculator with the arithmetic expression from the question, "
               "then state the result in one sentence.")
RESEARCHER_SYSTEM = ("You are the researcher. Call search_docs with the key words of the question, then state "
                     "what the passages say about it in two sentences.")
WRITER_SYSTEM = "You are the writer. Using the notes, answer the question in two or three clear sentences."


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
    math_agent = react.build(models["math"], [calculator_tool()], system=MATH_SYSTEM, name="math")
    researcher_agent = react.build(models["researcher"], [search_tool(search)], system=RESEARCHER_SYSTEM,
                                   name="researcher")

    def route(state: SupervisorState) -> dict[str, Any]:
        spoken = [who for who, _ in state.get("notes", [])]
        choices = [s for s in SPECIALISTS if s not in spoken] + ([FINISH] if spoken else [])
        if choices == [FINISH]:
            return {"next": FINISH}
        schema = {"type": "object", "properties": {"next": {"type": "string", "enum": choices}},
                  "required": ["next"], "additionalProperties": False}
        roles = "; ".join(f"{s} {ROLES[s]}" for s in SPECIALISTS)
        system = ROUTER_SYSTEM.format(roles=roles, choices=", ".join(choices))
        reply = models["router"].bind(response_format=json_schema_format("route", schema)).invoke(
            [SystemMessage(system), HumanMessage(_brief(state))])
        choice, exact = pick_choice(str(reply.content), "next", choices)
        if choice is None:
            choice = choices[0]  # an unreadable reply consults the next specialist in order: the loop still ends
            logger.warning("router reply named no choice of %s; sending it to %s: %r", choices, choice, reply.content)
        return {"next": choice, "route_fallbacks": int(not exact)}

    def run_react(agent: CompiledStateGraph, name: str, state: SupervisorState) -> dict[str, Any]:
        result = agent.invoke({"messages": [HumanMessage(_brief(state))]})
        return {"notes": [(name, str(result["messages"][-1].content).strip())]}

    def math(state: SupervisorState) -> dict[str, Any]:
        return run_react(math_agent, "math", state)

    def researcher(state: SupervisorState) -> dict[str, Any]:
        return run_react(researcher_agent, "researcher", state)

    def writer(state: SupervisorState) -> dict[str, Any]:
        reply = models["writer"].invoke([SystemMessage(WRITER_SYSTEM), HumanMessage(_brief(state))])
        return {"notes": [("writer", str(reply.content).strip())]}

    def finish(state: SupervisorState) -> dict[str, Any]:
        notes = state.get("notes", [])
        # The writer's note is the answer when it spoke; otherwise the last specialist's.
        answer = next((text for who, text in reversed(notes) if who == "writer"), notes[-1][1] if notes else "")
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
    graph.add_conditional_edges("router", lambda s: s["next"], {**{s: s for s in SPECIALISTS}, FINISH: "finish"})
    for specialist in SPECIALISTS:
        graph.add_edge(specialist, "router")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name="supervisor")


def _brief(state: SupervisorState) -> str:
    """The question and the notes so far, as one user message (small models follow one message best)."""
    lines = [f"Question: {state['question']}"]
    for who, text in state.get("notes", []):
        lines.append(f"Note from {who}: {text}")
    return "\n".join(lines)

