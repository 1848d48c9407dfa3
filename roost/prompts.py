"""Prompt rendering shared by the backend and finetune.

One function turns OpenAI-style chat messages (and tools) into the exact text a
model sees, so that an adapter is trained on the same prompt it is served with.
Models whose chat template knows no tools get them described in the system
message, and their calls written as ``<tool_call>{json}</tool_call>`` (the
Hermes/Qwen convention that most small instruct models have seen).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from roost.errors import RoostError

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"


class PromptError(RoostError, ValueError):
    """The messages or tools cannot be rendered; the message says which one and why."""


def message_text(content: Any, where: str = "message") -> str:
    """The text of an OpenAI ``content`` field: a string, None, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise PromptError(f"{where}.content[{i}]: only text parts are supported, got '{kind}'")
            texts.append(part["text"])
        return "".join(texts)
    raise PromptError(f"{where}.content must be a string or a list of text parts, not {type(content).__name__}")


def tools_system_text(tools: Sequence[dict[str, Any]]) -> str:
    """How tools are described to a model whose template has no tool support."""
    specs = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    return (
        "You can call these tools. Each is a JSON function signature:\n"
        f"<tools>\n{specs}\n</tools>\n"
        "To call a tool, answer with one line per call:\n"
        f'{TOOL_CALL_OPEN}{{"name": <function-name>, "arguments": <arguments-object>}}{TOOL_CALL_CLOSE}'
    )


def format_tool_call(name: str, arguments: Any) -> str:
    """A tool call as the model writes it (``arguments`` as an object, not a JSON string)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            pass
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{TOOL_CALL_CLOSE}"


def normalize_messages(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None,
                       *, native_tools: bool = False) -> list[dict[str, str]]:
    """Plain ``{role, content}`` messages the chat template can render.

    ``developer`` becomes ``system``; assistant ``tool_calls`` and ``tool`` results
    become text unless the template renders tools itself (``native_tools``).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise PromptError("messages must be a non-empty list")
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise PromptError(f"{where} must be an object with 'role' and 'content'")
        role = msg.get("role")
        if role not in ROLES:
            raise PromptError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        text = message_text(msg.get("content"), where)
        if role == "developer":
            role = "system"
        if role == "assistant" and msg.get("tool_calls") and not native_tools:
            calls = [format_tool_call(c["function"]["name"], c["function"].get("arguments", {}))
                     for c in msg["tool_calls"]]
            text = "\n".join(([text] if text else []) + calls)
        elif role == "tool" and not native_tools:
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        out.append({"role": role, "content": text})
    if tools and not native_tools:
        description = tools_system_text(tools)
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{description}"}
        else:
            out.insert(0, {"role": "system", "content": description})
    return out


def template_has_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "tools" in template


def render_chat(tokenizer: Any, messages: Sequence[dict[str, Any]], *, tools: Sequence[dict[str, Any]] | None = None,
                add_generation_prompt: bool = True) -> str:
    """The prompt text for ``messages`` under the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError("this model's tokenizer has no chat template; use /v1/completions with a raw prompt")
    native = template_has_tools(tokenizer)
    plain = normalize_messages(messages, tools, native_tools=native)
    kwargs: dict[str, Any] = {"tools": list(tools)} if (tools and native) else {}
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text; the template already placed every special token."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_prompt_completion(tokenizer: Any, prompt: str | Sequence[dict[str, Any]],
                             completion: str | Sequence[dict[str, Any]]) -> tuple[str, str]:
    """Split a training example into (prompt text, completion text) exactly as served.

    Conversational rows render the prompt with the generation header and the
    completion as the rest of the full conversation, so the boundary is the one
    the backend produces at inference. Plain-text rows are used as they are.
    """
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    if isinstance(prompt, str) or isinstance(completion, str):
        raise PromptError("prompt and completion must both be text or both be message lists")
    prompt_text = render_chat(tokenizer, prompt, add_generation_prompt=True)
    full = render_chat(tokenizer, [*prompt, *completion], add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise PromptError("the chat template renders the prompt differently inside the full conversation")
    return prompt_text, full[len(prompt_text):]
