"""What the AutoGen teams share: one model client per agent, streamed steps, the run's result.

Example:
    >>> clients = model_clients("agents.autogen_team", ("writer", "critic"))
    >>> result = await run_team(team, "Explain LoRA adapters.", on_step=print)
"""

from __future__ import annotations

import asyncio
import inspect
import time
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agents.tools import args_model, check_agents, generation_options, model_name
from roost.errors import RoostError

if TYPE_CHECKING:
    from autogen_agentchat.base import TaskResult, Team
    from autogen_core.models import ChatCompletionClient
    from autogen_core.tools import BaseTool

    from roost.config import Settings

Step = dict[str, Any]
OnStep = Callable[[Step], None]
T = TypeVar("T")

CLIENT_OPTIONS = ("temperature", "max_tokens")


def require_autogen() -> None:
    """Fail with the install hint when the autogen extra is missing."""
    try:
        import autogen_agentchat  # noqa: F401
        import autogen_ext.models.openai  # noqa: F401
    except ImportError:
        raise RoostError("the AutoGen teams need AutoGen AgentChat: install roost[autogen]") from None


def model_clients(target: str, agents: Sequence[str], models: Mapping[str, str] | None = None, *,
                  model: str | None = None, settings: Settings | None = None,
                  **options: Any) -> dict[str, ChatCompletionClient]:
    """An AutoGen model client per agent on its own model name, tagged ``TARGET/AGENT`` in the trace store.

    Args:
        target: the team's dotted name, the first half of each caller tag.
        agents: the agents that need a client.
        models: model name or alias per agent; see :func:`agents.tools.model_name`.
        model: one model name or alias for every agent not in ``models``.
        settings: roost settings; default: :func:`roost.config.load_settings`.
        **options: ``temperature``, ``max_tokens``; see :func:`agents.tools.generation_options`.
    """
    from roost.clients import autogen_client
    from roost.config import load_settings

    check_agents(target, models, agents)
    settings = settings or load_settings()
    clients = {}
    for agent in agents:
        name = model_name(agent, models, settings, model)
        # parallel_tool_calls=False: one call per reply; a 135M model allowed more repeats the call until the
        # reply is cut off mid-call (measured: 8 calls, the last 2 cut, at 96 tokens).
        clients[agent] = autogen_client(name, caller=f"{target}/{agent}", settings=settings,
                                        parallel_tool_calls=False, **generation_options(name, settings, options))
    return clients


def tools_required(client: ChatCompletionClient) -> ChatCompletionClient:
    """``client``, but every call that offers tools asks for a tool call (``tool_choice="required"``).

    AssistantAgent always sends ``auto``, and a 135M model given the choice mostly
    answers from memory. With the default ``max_tool_iterations=1`` and no reflection,
    such an agent's turn is exactly one tool call, whose result is its message.
    """
    from autogen_core.models import ChatCompletionClient

    class RequiredToolsClient(ChatCompletionClient):
        def __init__(self, inner: ChatCompletionClient) -> None:
            self.inner = inner

        async def create(self, messages: Sequence[Any], *, tools: Sequence[Any] = (), tool_choice: Any = "auto",
                         **kwargs: Any) -> Any:
            if tools and tool_choice == "auto":
                tool_choice = "required"
            return await self.inner.create(messages, tools=tools, tool_choice=tool_choice, **kwargs)

        def create_stream(self, messages: Sequence[Any], *, tools: Sequence[Any] = (), tool_choice: Any = "auto",
                          **kwargs: Any) -> Any:
            if tools and tool_choice == "auto":
                tool_choice = "required"
            return self.inner.create_stream(messages, tools=tools, tool_choice=tool_choice, **kwargs)

        async def close(self) -> None:
            await self.inner.close()

        def actual_usage(self) -> Any:
            return self.inner.actual_usage()

        def total_usage(self) -> Any:
            return self.inner.total_usage()

        def count_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return self.inner.count_tokens(messages, **kwargs)

        def remaining_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return self.inner.remaining_tokens(messages, **kwargs)

        @property
        def capabilities(self) -> Any:
            return self.inner.capabilities

        @property
        def model_info(self) -> Any:
            return self.inner.model_info

    return RequiredToolsClient(client)


def typed_tool(func: Callable[..., Any]) -> BaseTool:
    """An AutoGen tool for ``func`` whose argument schema keeps each ``Annotated`` pydantic ``Field``.

    AutoGen's own ``FunctionTool`` keeps only a string description from ``Annotated``;
    this keeps the patterns and lengths too, which the backend decodes calls under.
    """
    from autogen_core.tools import BaseTool
    from pydantic import BaseModel

    returns = typing.get_type_hints(func).get("return", str)

    class FunctionArgsTool(BaseTool[BaseModel, Any]):
        async def run(self, args: BaseModel, cancellation_token: Any) -> Any:
            return func(**args.model_dump())

    return FunctionArgsTool(args_model(func), returns, func.__name__, inspect.getdoc(func) or func.__name__)


def as_step(item: Any) -> Step:
    """A streamed AutoGen message or event as a roost step: its kind, who produced it, its text."""
    kind = type(item).__name__
    step: Step = {"kind": _KINDS.get(kind, kind.removesuffix("Message").removesuffix("Event").lower()),
                  "name": getattr(item, "source", "")}
    if kind == "ToolCallRequestEvent":
        step["output"] = "; ".join(f"{call.name}({call.arguments})" for call in item.content)
    elif kind == "ToolCallExecutionEvent":
        step["output"] = "; ".join(f"{result.name} -> {result.content}" for result in item.content)
        errors = [result.content for result in item.content if result.is_error]
        if errors:
            step["error"] = "; ".join(errors)
    else:
        step["output"] = item.to_text()
    return step


_KINDS = {"TextMessage": "message", "ToolCallRequestEvent": "tool_call", "ToolCallExecutionEvent": "tool_result",
          "ToolCallSummaryMessage": "tool_summary", "SelectSpeakerEvent": "select", "StopMessage": "stop"}


def tool_errors(messages: Sequence[Any]) -> int:
    """Tool calls in a run that failed: a tool that raised or got arguments it could not take, plus any
    call the model wrote as text (``<tool_call>...``) that never became a structured call."""
    from roost.prompts import TOOL_CALL_OPEN

    count = 0
    for message in messages:
        kind = type(message).__name__
        if kind == "ToolCallExecutionEvent":
            count += sum(1 for result in message.content if result.is_error)
        elif kind == "TextMessage" and TOOL_CALL_OPEN in message.to_text():
            count += 1
    return count


async def run_team(team: Team, task: str, *, on_step: OnStep | None = None) -> TaskResult:
    """Run ``team`` on ``task``, handing each message and event to ``on_step`` as it arrives."""
    from autogen_agentchat.base import TaskResult

    started = time.perf_counter()
    result: TaskResult | None = None
    async for item in team.run_stream(task=task, output_task_messages=False):
        if isinstance(item, TaskResult):
            result = item
        elif on_step is not None:
            on_step({**as_step(item), "seconds": round(time.perf_counter() - started, 3)})
    assert result is not None, "run_stream always ends with a TaskResult"
    return result


async def close_all(clients: Mapping[str, ChatCompletionClient]) -> None:
    """Close each distinct client once (two agents may share one)."""
    for client in {id(c): c for c in clients.values()}.values():
        await client.close()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run an AutoGen coroutine from synchronous code (``roost run``); inside an event loop, await it instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RoostError("run() was called inside a running event loop; await arun() instead")


def last_from(messages: Sequence[Any], source: str) -> str:
    """The text of the last chat message ``source`` wrote (tool events skipped), or ''."""
    for message in reversed(messages):
        if getattr(message, "source", None) == source and type(message).__name__ in ("TextMessage", "StopMessage"):
            return message.to_text()
    return ""
