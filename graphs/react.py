"""A single-LLM ReAct agent: one model that calls a calculator and searches local documents until it can answer.

The graph is the classic two-node loop, ``agent -> tools -> agent``, ending when
the model answers without a tool call. Two rules keep a 135M model on track:
its first step must call a tool (``tool_choice="required"``: small models
otherwise answer arithmetic from memory, wrongly), and after
``max_tool_rounds`` tool rounds the tools are switched off
(``tool_choice="none"``) so that the loop always ends with an answer.

Example:
    >>> graph = build(langchain_chat("default"), [calculator_tool()])
    >>> graph.invoke({"messages": [("user", "What is 17 * 23?")]})["messages"][-1].content
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AnyMessage
    from langchain_core.tools import BaseTool
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

DESCRIPTION = "LangGraph ReAct agent: one model with a calculator and search over roost's documents."
AGENT = "assistant"
RUN_OPTIONS = ("model", "models", "temperature", "max_tokens", "thread_id", "docs", "max_tool_rounds")

SYSTEM = (
    "You are a careful assistant. Use the calculator for any arithmetic and search_docs for questions about "
    "roost. When a tool has answered, reply with the final answer in one short sentence."
)
MAX_TOOL_ROUNDS = 3

OnStep = Callable[[dict[str, Any]], None]


def build(model: BaseChatModel, tools: Sequence[BaseTool], *, system: str = SYSTEM, require_tool: bool = True,
          max_tool_rounds: int = MAX_TOOL_ROUNDS, stop_after_tools: bool = False,
          checkpointer: BaseCheckpointSaver | None = None, name: str = "react") -> CompiledStateGraph:
    """Compile the ReAct loop for ``model`` with ``tools``.

    Args:
        model: a chat model that supports ``bind_tools`` (see :func:`roost.clients.langchain_chat`).
        tools: what the agent may call.
        system: the system message put before the conversation on every step.
        require_tool: make the first step call a tool.
        max_tool_rounds: tool rounds before the tools are switched off and the model must answer.
        stop_after_tools: end as soon as the tools have answered, with their results as the last messages
            (for an agent whose caller wants the facts, not the model's retelling of them).
        checkpointer: saves each step, so that a run can be resumed by its thread id.
        name: the graph's name in streamed events.
    """
    from langchain_core.messages import SystemMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    if not tools:
        raise ValueError("a ReAct agent needs at least one tool")
    if max_tool_rounds < 1:
        raise ValueError(f"max_tool_rounds must be at least 1, got {max_tool_rounds}")

    def agent(state: MessagesState) -> dict[str, Any]:
        rounds = tool_rounds(state["messages"])
        if rounds >= max_tool_rounds:
            choice = "none"
        else:
            choice = "required" if require_tool and rounds == 0 else "auto"
        # One call per step: a small model asked for several writes the same call over and over.
        bound = model.bind_tools(tools, tool_choice=choice, parallel_tool_calls=False)
        reply = bound.invoke([SystemMessage(system), *state["messages"]])
        if choice == "none" and getattr(reply, "tool_calls", None):
            # A model that calls a tool anyway gets no more tool rounds: keep its words as the answer.
            reply = reply.model_copy(update={"tool_calls": [], "additional_kwargs": {}})
        return {"messages": [reply]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", END if stop_after_tools else "agent")
    return graph.compile(checkpointer=checkpointer, name=name)


def tool_rounds(messages: Sequence[AnyMessage]) -> int:
    """How many times the model has called tools since the last user message."""
    rounds = 0
    for message in reversed(messages):
        if message.type == "human":
            break
        if message.type == "ai" and getattr(message, "tool_calls", None):
            rounds += 1
    return rounds


def answer(graph: CompiledStateGraph, question: str, config: dict[str, Any] | None = None) -> str:
    """Run ``graph`` on one question and return the last message's text."""
    state = graph.invoke({"messages": [("user", question)]}, config)
    return str(state["messages"][-1].content)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Answer a question (a string, or ``{"question": ...}``) with the calculator and document search.

    Options: ``model`` or ``models`` (``{"assistant": NAME}``), ``temperature``, ``max_tokens``,
    ``thread_id`` (continue that conversation), ``docs`` (a folder of ``*.md`` files), ``max_tool_rounds``.

    Returns:
        ``answer``, ``thread_id`` and ``tool_calls`` (each call the agent made, as ``name(args)``).
    """
    from graphs.runtime import (
        chat_models,
        check_options,
        checkpoints_path,
        describe_message,
        new_thread_id,
        require_langgraph,
        sqlite_checkpointer,
        stream_steps,
    )
    from graphs.tools import DOCS_DIR, DocSearch, backend_embeddings, calculator_tool, search_tool
    from roost.config import load_settings
    from roost.errors import RoostError

    require_langgraph()
    check_options(__name__, options, RUN_OPTIONS)
    question = input.get("question", "") if isinstance(input, dict) else input
    if not str(question).strip():
        raise RoostError(f"{__name__} needs a question, e.g. 'What is 17 * 23?'")
    settings = load_settings()
    model = chat_models(__name__, (AGENT,), options.get("models"), model=options.get("model"), settings=settings,
                        temperature=options.get("temperature"),
                        max_tokens=options.get("max_tokens"))[AGENT]
    tools = [calculator_tool(), search_tool(DocSearch(options.get("docs") or DOCS_DIR, backend_embeddings(settings)))]
    thread_id = str(options.get("thread_id") or new_thread_id())
    config = {"configurable": {"thread_id": thread_id}}
    with sqlite_checkpointer(checkpoints_path(settings)) as saver:
        graph = build(model, tools, checkpointer=saver, max_tool_rounds=options.get("max_tool_rounds", MAX_TOOL_ROUNDS))
        stream_steps(graph, {"messages": [("user", str(question))]}, config, on_step)
        messages = graph.get_state(config).values["messages"]
    turn = messages[max(i for i, m in enumerate(messages) if m.type == "human"):]
    return {"answer": str(messages[-1].content), "thread_id": thread_id,
            "tool_calls": [describe_message(m) for m in turn if getattr(m, "tool_calls", None)]}
