"""An AutoGen SelectorGroupChat: a selector model picks who speaks next among a researcher, a writer and a critic.

The researcher looks terms up with the ``lookup_term`` tool, the writer drafts
the answer, the critic approves it or asks for a fix. AutoGen's own selector
asks the model to *mention* a name and retries when it does not, which a 135M
model often fails. Here the choice is structured output instead: the selector
client is asked for JSON ``{"next": NAME}`` under a JSON schema whose enum holds
the agents other than the last speaker (and no writer before the researcher, no
critic before the writer), so a constrained backend always returns a valid
name; when only one agent is allowed, nobody is asked. A reply that is not that JSON is read
defensively (the first allowed name it mentions, else the next agent in order);
those fallbacks are counted in the result.

Example:
    >>> from agents import autogen_selector
    >>> autogen_selector.run("What is a caller tag?", on_step=print)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
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
    tools_required,
    typed_tool,
)
from agents.tools import check_options, lookup_term

if TYPE_CHECKING:
    from autogen_agentchat.teams import SelectorGroupChat
    from autogen_core.models import ChatCompletionClient

logger = logging.getLogger(__name__)

DESCRIPTION = "AutoGen SelectorGroupChat: a selector model picks the researcher, writer or critic to speak next."
SPEAKERS = ("researcher", "writer", "critic")
AGENTS = ("selector", *SPEAKERS)
MAX_MESSAGES = 8
APPROVE = "APPROVE"

ROLES = {
    "researcher": "looks roost terms up in the glossary with lookup_term",
    "writer": "writes the answer from what the researcher found",
    "critic": f"checks the writer's answer and says {APPROVE} or what to fix",
}
REQUIRES = {"writer": ("researcher",), "critic": ("writer",)}
"""Who must have spoken before an agent may be picked."""
SELECTOR_SYSTEM = (
    "You choose who speaks next in a team: {roles}. "
    'Reply with JSON only: {{"next": "<one of {choices}>"}}.'
)
RESEARCHER_SYSTEM = "You are the researcher. Call lookup_term with the roost term the question is about."
WRITER_SYSTEM = "You are the writer. Answer the question in two sentences, using what the researcher found."
CRITIC_SYSTEM = (f"You are the critic. If the writer's answer is correct and clear, reply {APPROVE}. "
                 "Otherwise say what to fix.")


class Selector:
    """The speaker-selection function: structured output from the selector client, read defensively.

    Args:
        client: the selector's model client.
        speakers: the participants' names, in their default speaking order.
    """

    def __init__(self, client: ChatCompletionClient, speakers: Sequence[str] = SPEAKERS) -> None:
        self.client = client
        self.speakers = tuple(speakers)
        self.fallbacks = 0
        self.choices: list[str] = []

    async def select(self, thread: Sequence[Any]) -> str:
        """The next speaker for the conversation so far."""
        from autogen_core.models import SystemMessage, UserMessage

        spoken = [m.source for m in thread if getattr(m, "source", None) in self.speakers]
        previous = spoken[-1] if spoken else None
        # Never the last speaker again; no writer before any research, no critic before a draft.
        allowed = [s for s in self.speakers if s != previous and all(r in spoken for r in REQUIRES.get(s, ()))]
        if len(allowed) == 1:
            self.choices.append(allowed[0])
            return allowed[0]
        schema = {"type": "object", "properties": {"next": {"type": "string", "enum": allowed}},
                  "required": ["next"], "additionalProperties": False}
        response_format = {"type": "json_schema", "json_schema": {"name": "speaker", "schema": schema, "strict": True}}
        roles = "; ".join(f"{s} {ROLES.get(s, '')}".strip() for s in self.speakers)
        history = "\n".join(f"{getattr(m, 'source', '?')}: {m.to_text()}" for m in thread
                            if type(m).__name__ in ("TextMessage", "ToolCallSummaryMessage", "StopMessage"))
        result = await self.client.create(
            [SystemMessage(content=SELECTOR_SYSTEM.format(roles=roles, choices=", ".join(allowed))),
             UserMessage(content=f"{history}\n\nWho speaks next?", source="user")],
            extra_create_args={"response_format": response_format},
        )
        choice = self._read(str(result.content), allowed, previous)
        self.choices.append(choice)
        return choice

    def _read(self, text: str, allowed: list[str], previous: str | None) -> str:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("next") in allowed:
            return str(data["next"])
        self.fallbacks += 1
        found = [(m.start(), name) for name in allowed if (m := re.search(rf"\b{re.escape(name)}\b", text, re.I))]
        if found:
            choice = min(found)[1]
        else:
            # Nothing readable: the next speaker in the default order keeps the conversation moving.
            order = self.speakers
            start = order.index(previous) + 1 if previous in order else 0
            choice = next(order[(start + i) % len(order)] for i in range(len(order))
                          if order[(start + i) % len(order)] in allowed)
        logger.warning("selector reply was not the JSON asked for; chose %s: %r", choice, text[:200])
        return choice


def build(clients: Mapping[str, ChatCompletionClient], *,
          max_messages: int = MAX_MESSAGES) -> tuple[SelectorGroupChat, Selector]:
    """The team over ``clients`` (one per agent in :data:`AGENTS`), and its :class:`Selector`."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import SelectorGroupChat

    missing = [a for a in AGENTS if a not in clients]
    if missing:
        raise ValueError(f"the team needs a model client for {', '.join(missing)}")
    if max_messages < 2:
        raise ValueError(f"max_messages must be at least 2 (the task and one reply), got {max_messages}")
    # One required lookup per turn: the researcher's message is the glossary's answer itself.
    researcher = AssistantAgent("researcher", tools_required(clients["researcher"]), tools=[typed_tool(lookup_term)],
                                system_message=RESEARCHER_SYSTEM, description=ROLES["researcher"])
    writer = AssistantAgent("writer", clients["writer"], system_message=WRITER_SYSTEM, description=ROLES["writer"])
    critic = AssistantAgent("critic", clients["critic"], system_message=CRITIC_SYSTEM, description=ROLES["critic"])
    selector = Selector(clients["selector"])
    stop = TextMentionTermination(APPROVE, sources=["critic"]) | MaxMessageTermination(max_messages)
    team = SelectorGroupChat([researcher, writer, critic], model_client=clients["selector"],
                             termination_condition=stop, selector_func=selector.select)
    return team, selector


async def arun(input: str | dict[str, Any], *, on_step: OnStep | None = None,
               clients: Mapping[str, ChatCompletionClient] | None = None, models: Mapping[str, str] | None = None,
               model: str | None = None, max_messages: int = MAX_MESSAGES, **options: Any) -> dict[str, Any]:
    """Run the team on a question (a string, or ``{"task": ...}``); return the writer's answer and the run's course.

    Args:
        input: the question.
        on_step: called with each message and tool event as it arrives.
        clients: model clients per agent in :data:`AGENTS`; default: :func:`roost.clients.autogen_client`.
        model: one model name or alias for every agent not in ``models``.
        models: model name or alias per agent; see :func:`agents.tools.model_name`.
        max_messages: the cap on messages, the task included.
        **options: ``temperature``, ``max_tokens`` for every agent.
    """
    require_autogen()
    check_options(__name__, options, CLIENT_OPTIONS)
    task = input.get("task", "") if isinstance(input, dict) else input
    if not str(task).strip():
        raise ValueError(f"{__name__} needs a question, e.g. 'What is a caller tag?'")
    owned = clients is None
    clients = clients or model_clients(__name__, AGENTS, models, model=model, **options)
    team, selector = build(clients, max_messages=max_messages)
    try:
        result = await run_team(team, str(task), on_step=on_step)
    finally:
        if owned:
            await close_all(clients)
    return {
        "answer": last_from(result.messages, "writer"),
        "approved": APPROVE in last_from(result.messages, "critic"),
        "speakers": selector.choices,
        "selector_fallbacks": selector.fallbacks,
        "stop_reason": result.stop_reason,
        "tool_errors": tool_errors(result.messages),
    }


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """:func:`arun` for synchronous callers such as ``roost run agents.autogen_selector``."""
    return run_sync(arun(input, on_step=on_step, **options))
