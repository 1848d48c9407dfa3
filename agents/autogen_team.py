"""An AutoGen AgentChat writer/critic team: a RoundRobinGroupChat that stops on APPROVE or a message cap.

The writer drafts a short paragraph (it may call ``count_words`` to check the
length) and rewrites it on feedback; the critic answers ``APPROVE`` or one
piece of feedback. The run ends when the critic's message mentions APPROVE, or
after ``max_messages`` messages, whichever comes first: with a 135M critic the
cap is what usually ends it, so the result says which rule fired.

Example:
    >>> from agents import autogen_team
    >>> autogen_team.run("Explain what a LoRA adapter is.", on_step=print)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.autogen_common import (
    CLIENT_OPTIONS,
    OnStep,
    close_all,
    last_from,
    model_clients,
    require_autogen,
    run_sync,
    run_team,
    tool_errors,
    typed_tool,
)
from agents.tools import check_options, count_words

if TYPE_CHECKING:
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_core.models import ChatCompletionClient

DESCRIPTION = "AutoGen writer/critic team (RoundRobinGroupChat): drafts a paragraph until the critic approves."
AGENTS = ("writer", "critic")
MAX_MESSAGES = 6
APPROVE = "APPROVE"

WRITER_SYSTEM = ("You are a writer. Write one short paragraph, under 80 words, that does the task. When the critic "
                 "gives feedback, rewrite the paragraph to follow it. Reply with the paragraph only.")
CRITIC_SYSTEM = (f"You are a critic. If the writer's paragraph does the task clearly in under 80 words, reply "
                 f"{APPROVE}. Otherwise reply with one sentence of feedback.")


def build(clients: Mapping[str, ChatCompletionClient], *, max_messages: int = MAX_MESSAGES) -> RoundRobinGroupChat:
    """The team over ``clients["writer"]`` and ``clients["critic"]``; stops on the critic's APPROVE or the cap."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    missing = [a for a in AGENTS if a not in clients]
    if missing:
        raise ValueError(f"the team needs a model client for {', '.join(missing)}")
    if max_messages < 2:
        raise ValueError(f"max_messages must be at least 2 (the task and one reply), got {max_messages}")
    # reflect_on_tool_use: after count_words answers, the writer still owes the paragraph itself.
    writer = AssistantAgent("writer", clients["writer"], tools=[typed_tool(count_words)], system_message=WRITER_SYSTEM,
                            reflect_on_tool_use=True, description="Writes and rewrites the paragraph.")
    critic = AssistantAgent("critic", clients["critic"], system_message=CRITIC_SYSTEM,
                            description=f"Reviews the paragraph and says {APPROVE} or what to fix.")
    stop = TextMentionTermination(APPROVE, sources=["critic"]) | MaxMessageTermination(max_messages)
    return RoundRobinGroupChat([writer, critic], termination_condition=stop)


async def arun(input: str | dict[str, Any], *, on_step: OnStep | None = None,
               clients: Mapping[str, ChatCompletionClient] | None = None, models: Mapping[str, str] | None = None,
               model: str | None = None, max_messages: int = MAX_MESSAGES, **options: Any) -> dict[str, Any]:
    """Run the team on a task (a string, or ``{"task": ...}``); return the last draft and how the run ended.

    Args:
        input: the writing task.
        on_step: called with each message and tool event as it arrives.
        clients: model clients per agent (tests pass replay clients); default: :func:`roost.clients.autogen_client`.
        model: one model name or alias for every agent not in ``models``.
        models: model name or alias per agent (``{"critic": "critic-v1"}``); see :func:`agents.tools.model_name`.
        max_messages: the cap on messages, the task included.
        **options: ``temperature``, ``max_tokens`` for every agent.
    """
    require_autogen()
    check_options(__name__, options, CLIENT_OPTIONS)
    task = input.get("task", "") if isinstance(input, dict) else input
    if not str(task).strip():
        raise ValueError(f"{__name__} needs a task, e.g. 'Explain what a LoRA adapter is.'")
    owned = clients is None
    clients = clients or model_clients(__name__, AGENTS, models, model=model, **options)
    try:
        result = await run_team(build(clients, max_messages=max_messages), str(task), on_step=on_step)
    finally:
        if owned:
            await close_all(clients)
    verdict = last_from(result.messages, "critic")
    return {
        "answer": last_from(result.messages, "writer"),
        "approved": APPROVE in verdict,
        "stop_reason": result.stop_reason,
        "tool_errors": tool_errors(result.messages),
        "messages": len(result.messages),
    }


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """:func:`arun` for synchronous callers such as ``roost run agents.autogen_team``."""
    return run_sync(arun(input, on_step=on_step, **options))
