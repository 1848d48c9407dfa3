"""Loading and validating TRL's JSONL dataset formats, rendered and tokenized as the backend serves them.

Formats, one JSON object per line:

- conversational (SFT): ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``
- prompt-completion (SFT): ``{"prompt": ..., "completion": ...}``, both text or both message lists
- preference (DPO, reward): ``{"prompt": ..., "chosen": ..., "rejected": ...}``
- prompt-only (GRPO): ``{"prompt": ..., <any other columns, passed to the reward function>}``

Every row is checked against the rules in :data:`RULES`; a bad row is reported
as ``FILE:LINE: rule: what is wrong``. Prompts are rendered with
:mod:`roost.prompts` (the code the backend serves with) and tokenized here, so
TRL never applies a chat template of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roost.errors import RoostError
from roost.prompts import PromptError, encode, message_text, render_chat

logger = logging.getLogger(__name__)

Kind = Literal["sft", "preference", "prompt"]

RULES: dict[str, str] = {
    "invalid-json": "each line must be one valid JSON object",
    "not-an-object": "each line must be a JSON object, not a list or a scalar",
    "unknown-format": "the row's keys match no supported format",
    "missing-key": "a key the format needs is missing",
    "bad-type": "a value has the wrong type",
    "empty-messages": "a message list must not be empty",
    "non-alternating": "messages go: an optional system message, then user and assistant alternating",
    "last-not-assistant": "a conversation for SFT must end with an assistant message",
    "last-not-user": "a prompt given as messages must end with a user message",
    "empty-prompt": "the prompt must not be empty",
    "empty-completion": "the completion (or chosen/rejected answer) must not be empty",
    "chosen-equals-rejected": "chosen and rejected must differ, or the pair teaches nothing",
    "template": "the chat template cannot render the row consistently",
    "too-long": "the row is longer than --max-length tokens after rendering",
}

_EXPECTED = {
    "sft": "'messages', or 'prompt' and 'completion'",
    "preference": "'prompt', 'chosen' and 'rejected'",
    "prompt": "'prompt' (plus any columns your reward function reads)",
}


class DataError(RoostError, ValueError):
    """A data file cannot be used: the message names the file, the line and the rule."""


class _Invalid(Exception):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Problem:
    """One invalid row."""

    path: Path
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


@dataclass
class Prepared:
    """The valid rows of one file, tokenized, with what was skipped and the file's digest."""

    path: Path
    kind: Kind
    rows: list[dict[str, Any]]
    sha256: str
    lines: int
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        """One line: rows kept and, per rule, rows skipped."""
        text = f"{self.path}: {len(self.rows)} rows"
        if self.skipped:
            counts = ", ".join(f"{rule} {n}" for rule, n in sorted(self.skipped.items()))
            text += f", skipped {sum(self.skipped.values())} invalid ({counts})"
        return text


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for every non-blank line; bad JSON yields an :class:`_Invalid`."""
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, _Invalid("invalid-json", f"not valid JSON ({exc.msg} at column {exc.colno})")


def prepare(path: Path | str, kind: Kind, tokenizer: Any, *, max_length: int, skip_invalid: bool = False,
            completion_room: int = 0) -> Prepared:
    """Validate, render and tokenize every row of ``path``.

    Args:
        path: a JSONL file.
        kind: ``"sft"`` (conversational or prompt-completion), ``"preference"`` or ``"prompt"``.
        tokenizer: the base model's tokenizer (its chat template renders message rows).
        max_length: longest allowed row in tokens (for ``"prompt"``: prompt plus ``completion_room``).
        skip_invalid: drop invalid rows and count them per rule instead of raising.
        completion_room: tokens reserved for generated completions (GRPO).

    Raises:
        DataError: for the first invalid row (naming file, line and rule) unless ``skip_invalid``;
            also when the file is missing or no valid row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    build = _BUILDERS[kind]
    prepared = Prepared(path=path, kind=kind, rows=[], sha256=sha256_of(path), lines=0)
    for number, value in read_jsonl(path):
        prepared.lines += 1
        try:
            if isinstance(value, _Invalid):
                raise value
            if not isinstance(value, dict):
                raise _Invalid("not-an-object", f"got a JSON {type(value).__name__}, expected an object")
            prepared.rows.append(build(value, tokenizer, max_length, completion_room))
        except _Invalid as bad:
            prepared.problems.append(Problem(path, number, bad.rule, bad.detail))
            prepared.skipped[bad.rule] += 1
    if prepared.problems and not skip_invalid:
        raise DataError(_describe(prepared))
    if prepared.skipped:
        logger.info("%s", prepared.summary())
    if not prepared.rows:
        raise DataError(f"{path}: no valid rows (expected {_EXPECTED[kind]} per line)")
    return prepared


def _describe(prepared: Prepared) -> str:
    first = prepared.problems[0]
    text = f"{first} ({RULES[first.rule]})"
    others = len(prepared.problems) - 1
    if others:
        rest = Counter(p.rule for p in prepared.problems[1:])
        text += f"; {others} more invalid row(s): " + ", ".join(f"{r} {n}" for r, n in sorted(rest.items()))
    return text + "; fix the rows or pass --skip-invalid to skip them"


# validation -------------------------------------------------------------------------------------


def _require(row: dict[str, Any], keys: tuple[str, ...], kind: Kind) -> None:
    present = [k for k in keys if k in row]
    hint = _other_format(row, kind)
    if not present or hint:
        raise _Invalid("unknown-format", f"keys {sorted(row)} match no {kind} format; expected {_EXPECTED[kind]}{hint}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise _Invalid("missing-key", f"missing key '{missing[0]}' (this format needs {_EXPECTED[kind]})")


def _other_format(row: dict[str, Any], kind: Kind) -> str:
    if kind != "sft" and "messages" in row:
        return " (conversational 'messages' rows are for `roost finetune sft`)"
    if kind != "preference" and ("chosen" in row or "rejected" in row):
        return " (preference rows are for `roost finetune dpo` and `reward`)"
    return ""


def _messages(value: Any, key: str, *, last: str) -> list[dict[str, Any]]:
    """Check a message list: optional system, then user/assistant alternating, ending with ``last``."""
    if not isinstance(value, list):
        raise _Invalid("bad-type", f"'{key}' must be a list of messages, not {type(value).__name__}")
    if not value:
        raise _Invalid("empty-messages", f"'{key}' is an empty list")
    expected = "user"
    for i, msg in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise _Invalid("bad-type", f"{where} must be an object with 'role' and 'content'")
        try:
            message_text(msg["content"], where)
        except PromptError as exc:
            raise _Invalid("bad-type", str(exc)) from None
        role = msg["role"]
        if i == 0 and role == "system" and key != "completion":
            continue
        if role != expected:
            raise _Invalid("non-alternating", f"{where} has role {role!r}, expected {expected!r}")
        expected = "assistant" if role == "user" else "user"
    final = value[-1]["role"]
    if final != last:
        rule = "last-not-assistant" if last == "assistant" else "last-not-user"
        raise _Invalid(rule, f"'{key}' ends with a {final!r} message, expected {last!r}")
    return value


def _completion(value: Any, key: str) -> list[dict[str, Any]] | str:
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("empty-completion", f"'{key}' is empty")
        return value
    if not isinstance(value, list):
        raise _Invalid("bad-type", f"'{key}' must be text or a list with one assistant message")
    if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
        raise _Invalid("non-alternating", f"'{key}' must hold exactly one assistant message")
    try:
        text = message_text(value[0].get("content"), f"{key}[0]")
    except PromptError as exc:
        raise _Invalid("bad-type", str(exc)) from None
    if not text.strip():
        raise _Invalid("empty-completion", f"'{key}' has an empty assistant message")
    return value


def _prompt(value: Any) -> list[dict[str, Any]] | str:
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("empty-prompt", "'prompt' is empty")
        return value
    prompt = _messages(value, "prompt", last="user")
    if not any(message_text(m["content"]).strip() for m in prompt if m["role"] == "user"):
        raise _Invalid("empty-prompt", "'prompt' has no user text")
    return prompt


def _same_kind(prompt: Any, completion: Any, key: str) -> None:
    if isinstance(prompt, str) != isinstance(completion, str):
        raise _Invalid("bad-type", f"'prompt' and '{key}' must both be text or both be message lists")


# rendering --------------------------------------------------------------------------------------


def _render(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PromptError as exc:
        raise _Invalid("template", str(exc)) from None


def _pair(tokenizer: Any, prompt: Any, completion: Any) -> tuple[str, str]:
    """(prompt text, completion text) exactly as served; text completions end with EOS so the model learns to stop."""
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        return prompt, completion if completion.endswith(eos) else completion + eos
    prompt_text = _render(lambda: render_chat(tokenizer, prompt, add_generation_prompt=True))
    full = _render(lambda: render_chat(tokenizer, [*prompt, *completion], add_generation_prompt=False))
    if not full.startswith(prompt_text):
        raise _Invalid("template", "the chat template renders the prompt differently inside the full conversation")
    return prompt_text, full[len(prompt_text):]


def _conversation_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and its labels: assistant turns as themselves, everything else -100."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt_text = _render(lambda i=i: render_chat(tokenizer, messages[:i], add_generation_prompt=True))
        full = _render(lambda i=i: render_chat(tokenizer, messages[: i + 1], add_generation_prompt=False))
        if not prompt_text.startswith(done) or not full.startswith(prompt_text):
            raise _Invalid("template", f"messages[{i}]: the chat template does not render turns as a prefix")
        # Each piece is encoded on its own, the way the backend encodes a prompt and then generates the answer.
        prompt_ids = encode(tokenizer, prompt_text[len(done):])
        answer_ids = encode(tokenizer, full[len(prompt_text):])
        ids += prompt_ids + answer_ids
        labels += [-100] * len(prompt_ids) + answer_ids
        done = full
    return ids, labels


def _too_long(n: int, max_length: int, what: str) -> None:
    if n > max_length:
        raise _Invalid("too-long", f"{what} is {n} tokens after rendering, over --max-length {max_length}")


def _build_sft(row: dict[str, Any], tokenizer: Any, max_length: int, _room: int) -> dict[str, Any]:
    if "messages" in row:
        messages = _messages(row["messages"], "messages", last="assistant")
        for i, msg in enumerate(messages):
            if msg["role"] == "assistant" and not message_text(msg["content"]).strip():
                raise _Invalid("empty-completion", f"messages[{i}] is an empty assistant message")
        ids, labels = _conversation_ids(tokenizer, messages)
    else:
        _require(row, ("prompt", "completion"), "sft")
        prompt, completion = _prompt(row["prompt"]), _completion(row["completion"], "completion")
        _same_kind(prompt, completion, "completion")
        prompt_text, completion_text = _pair(tokenizer, prompt, completion)
        prompt_ids, completion_ids = encode(tokenizer, prompt_text), encode(tokenizer, completion_text)
        ids = prompt_ids + completion_ids
        labels = [-100] * len(prompt_ids) + completion_ids
    _too_long(len(ids), max_length, "the row")
    return {"input_ids": ids, "labels": labels}


def _build_preference(row: dict[str, Any], tokenizer: Any, max_length: int, _room: int) -> dict[str, Any]:
    _require(row, ("prompt", "chosen", "rejected"), "preference")
    prompt = _prompt(row["prompt"])
    chosen, rejected = _completion(row["chosen"], "chosen"), _completion(row["rejected"], "rejected")
    _same_kind(prompt, chosen, "chosen")
    _same_kind(prompt, rejected, "rejected")
    prompt_text, chosen_text = _pair(tokenizer, prompt, chosen)
    _, rejected_text = _pair(tokenizer, prompt, rejected)
    if chosen_text == rejected_text:
        raise _Invalid("chosen-equals-rejected", "'chosen' and 'rejected' are the same answer")
    prompt_ids = encode(tokenizer, prompt_text)
    chosen_ids, rejected_ids = encode(tokenizer, chosen_text), encode(tokenizer, rejected_text)
    _too_long(len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)), max_length, "prompt plus the longer answer")
    return {"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids}


def _build_prompt(row: dict[str, Any], tokenizer: Any, max_length: int, room: int) -> dict[str, Any]:
    _require(row, ("prompt",), "prompt")
    prompt = _prompt(row["prompt"])
    text = prompt if isinstance(prompt, str) else _render(lambda: render_chat(tokenizer, prompt))
    n = len(encode(tokenizer, text))
    if n + room > max_length:
        raise _Invalid(
            "too-long",
            f"the prompt is {n} tokens after rendering; with {room} completion tokens that is over --max-length "
            f"{max_length}",
        )
    # GRPO samples its own completions; a reference 'completion' column (as in SFT rows) is not a reward input.
    return {**{k: v for k, v in row.items() if k != "completion"}, "prompt": text}


_BUILDERS: dict[str, Callable[[dict[str, Any], Any, int, int], dict[str, Any]]] = {
    "sft": _build_sft,
    "preference": _build_preference,
    "prompt": _build_prompt,
}
