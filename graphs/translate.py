"""Translate -> review -> revise, until the reviewer approves or the rounds run out.

Two agents: the ``translator`` writes the first translation and each revision,
the ``reviewer`` judges it as structured output, JSON
``{"approved": bool, "feedback": str}`` (decoded under that schema by the
backend; an unconstrained reply is read defensively, approving only when it
says APPROVE). The stopping rule: the reviewer approves, or ``max_rounds``
reviews have happened; the result says which.

Example:
    >>> graph = build(chat_models("graphs.translate", AGENTS))
    >>> graph.invoke({"text": "Good morning", "language": "French"})["translation"]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from graphs.runtime import parse_json_object, structured_reply

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)

DESCRIPTION = "LangGraph translate -> review -> revise loop until the reviewer approves or the rounds run out."
AGENTS = ("translator", "reviewer")
RUN_OPTIONS = ("model", "models", "temperature", "max_tokens", "thread_id", "language", "max_rounds")
DEFAULT_LANGUAGE = "French"
MAX_ROUNDS = 3
REVIEW_MAX_TOKENS = 160  # the JSON around a 300-character feedback takes ~100 tokens

OnStep = Callable[[dict[str, Any]], None]

TRANSLATOR_SYSTEM = "You are a translator. Reply with the translation only, no notes."
REVIEWER_SYSTEM = (
    "You review translations into {language}. If the translation is faithful and fluent, approve it. "
    'Otherwise say what to fix. Reply with JSON only: {{"approved": true or false, "feedback": "..."}}.'
)
REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "feedback": {"type": "string", "maxLength": 300}},
    "required": ["approved", "feedback"],
    "additionalProperties": False,
}


class TranslateState(TypedDict, total=False):
    """The text, the target language, the current translation and the last review."""

    text: str
    language: str
    translation: str
    approved: bool
    feedback: str
    rounds: int
    stopped_by: str


def build(models: Mapping[str, BaseChatModel], *, max_rounds: int = MAX_ROUNDS,
          checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """Compile the loop for ``models["translator"]`` and ``models["reviewer"]``; at most ``max_rounds`` reviews."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langgraph.graph import END, START, StateGraph

    missing = [a for a in AGENTS if a not in models]
    if missing:
        raise ValueError(f"the translate loop needs a model for {', '.join(missing)}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")

    def translate(state: TranslateState) -> dict[str, Any]:
        prompt = f"Translate into {state['language']}:\n{state['text']}"
        reply = models["translator"].invoke([SystemMessage(TRANSLATOR_SYSTEM), HumanMessage(prompt)])
        return {"translation": str(reply.content).strip(), "rounds": 0}

    def review(state: TranslateState) -> dict[str, Any]:
        prompt = f"Original:\n{state['text']}\n\nTranslation into {state['language']}:\n{state['translation']}"
        messages = [SystemMessage(REVIEWER_SYSTEM.format(language=state["language"])), HumanMessage(prompt)]
        approved, feedback = read_review(structured_reply(models["reviewer"], messages, "review", REVIEW_SCHEMA,
                                                          REVIEW_MAX_TOKENS))
        rounds = state.get("rounds", 0) + 1
        stopped_by = "approved" if approved else ("max_rounds" if rounds >= max_rounds else "")
        return {"approved": approved, "feedback": feedback, "rounds": rounds, "stopped_by": stopped_by}

    def revise(state: TranslateState) -> dict[str, Any]:
        prompt = (f"Translate into {state['language']}:\n{state['text']}\n\nYour last translation:\n"
                  f"{state['translation']}\n\nReviewer's feedback: {state['feedback']}\n"
                  "Write the improved translation.")
        reply = models["translator"].invoke([SystemMessage(TRANSLATOR_SYSTEM), HumanMessage(prompt)])
        return {"translation": str(reply.content).strip()}

    graph = StateGraph(TranslateState)
    graph.add_node("translate", translate)
    graph.add_node("review", review)
    graph.add_node("revise", revise)
    graph.add_edge(START, "translate")
    graph.add_edge("translate", "review")
    graph.add_conditional_edges("review", lambda s: END if s["stopped_by"] else "revise", [END, "revise"])
    graph.add_edge("revise", "review")
    return graph.compile(checkpointer=checkpointer, name="translate")


def read_review(text: str) -> tuple[bool, str]:
    """``(approved, feedback)`` from the reviewer's reply: its JSON, else APPROVE in its words."""
    data = parse_json_object(text)
    if data is not None and isinstance(data.get("approved"), bool):
        return data["approved"], str(data.get("feedback", "")).strip()
    logger.warning("review was not the JSON asked for; reading it as words: %r", text[:200])
    approved = re.search(r"\bAPPROVED?\b", text) is not None and not re.search(r"\bnot\s+approved?\b", text, re.I)
    return approved, text.strip()


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Translate a text (a string, or ``{"text": ..., "language": ...}``) through the review loop.

    Options: ``language`` (default French), ``model`` or ``models`` (``translator``, ``reviewer``),
    ``temperature``, ``max_tokens``, ``max_rounds``, ``thread_id`` (continue a run that stopped half-way).

    Returns:
        ``translation``, ``approved``, ``rounds``, ``stopped_by`` (``approved`` or ``max_rounds``), ``thread_id``.
    """
    from graphs.runtime import (
        chat_models,
        check_options,
        checkpoints_path,
        first_command,
        new_thread_id,
        require_langgraph,
        sqlite_checkpointer,
        stream_steps,
    )
    from roost.config import load_settings
    from roost.errors import RoostError

    require_langgraph()
    check_options(__name__, options, RUN_OPTIONS)

    def fresh() -> dict[str, str]:
        text = input.get("text", "") if isinstance(input, dict) else input
        language = (input.get("language") if isinstance(input, dict) else None) or options.get("language")
        if not str(text).strip():
            raise RoostError(f"{__name__} needs a text to translate, e.g. 'Good morning, friends.'")
        return {"text": str(text), "language": str(language or DEFAULT_LANGUAGE)}

    settings = load_settings()
    models = chat_models(__name__, AGENTS, options.get("models"), model=options.get("model"), settings=settings,
                         temperature=options.get("temperature"),
                         max_tokens=options.get("max_tokens"))
    thread_id = str(options.get("thread_id") or new_thread_id())
    config = {"configurable": {"thread_id": thread_id}}
    with sqlite_checkpointer(checkpoints_path(settings)) as saver:
        graph = build(models, max_rounds=options.get("max_rounds", MAX_ROUNDS), checkpointer=saver)
        stream_steps(graph, first_command(graph, config, fresh), config, on_step)
        state = graph.get_state(config).values
    return {"translation": state.get("translation", ""), "approved": state.get("approved", False),
            "rounds": state.get("rounds", 0), "stopped_by": state.get("stopped_by", ""), "thread_id": thread_id}
