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
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


def require_langgraph() -> None:
    """Fail with the install hint when the langgraph extra is missing."""
    try:
        import langchain_openai  # noqa: F401
        import langgraph  # noqa: F401
        import langgraph.checkpoint.sqlite  # noqa: F401
    except ImportError:
        raise RoostError("the graphs need LangGraph: install roost[langgraph]") from None


def model_name(agent: str, models: Mapping[str, str] | None, settings: Settings) -> str:
    """The model name or alias ``agent`` uses: an explicit choice, else the alias named after it, else default."""
    if models and agent in models:
        return models[agent]
    return agent if agent in settings.aliases else "default"


def check_agents(models: Mapping[str, Any] | None, agents: Iterable[str], target: str) -> None:
    """Refuse a models mapping that names an agent the graph does not have."""
    known = set(agents)
    unknown = sorted(set(models or {}) - known)
    if unknown:
        raise RoostError(f"{target} has no agent named {', '.join(unknown)}; its agents are "
                         f"{', '.join(sorted(known))}")


def chat_models(target: str, agents: Sequence[str], models: Mapping[str, str] | None = None, *,
                settings: Settings | None = None, **options: Any) -> dict[str, BaseChatModel]:
    """One LangChain chat model per agent, each tagged ``TARGET/AGENT`` in the trace store."""
    from roost.clients import langchain_chat
    from roost.config import load_settings

    check_agents(models, agents, target)
    settings = settings or load_settings()
    return {agent: langchain_chat(model_name(agent, models, settings), caller=f"{target}/{agent}", **options)
            for agent in agents}


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
