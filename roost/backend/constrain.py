"""Grammar-constrained decoding: JSON-schema answers and tool calls that always parse and validate.

A :class:`Grammar` is compiled once per (tokenizer, grammar) and cached; every
request gets its own :class:`Constraint` from :meth:`Grammar.new_constraint`,
which the engine drives token by token (``mask`` the logits, ``advance`` with the
sampled token, stop once ``is_terminated``). The grammars are llguidance's: it
computes a token mask in ~0.1 ms on this CPU, compiles a three-tool schema in
~10 ms and enforces every JSON-schema feature we measured
(benchmarks/constrain_overhead.py has the comparison with xgrammar, outlines-core
and lm-format-enforcer).

Tool calls are written the way roost.prompts tells models to write them, one
per line: ``<tool_call>{"name": "...", "arguments": {...}}</tool_call>``.
JSON is written with json.dumps' separators (``", "`` and ``": "``) and no other
whitespace, the form models see in their prompts, which also keeps random
whitespace from eating the token budget.

Two narrowings keep every output valid under the schema while sparing small
models two common failures (``_narrowed`` says where they are not applied).
Objects that list ``properties`` accept no other keys unless the schema says so
(``additionalProperties``), so a Python function called with ``**arguments``
gets no surprise keyword. Integers without bounds stay within +-(2**53 - 1)
(JSON's safe integers), so a model that repeats a digit stops after 16 of them
instead of running to ``max_tokens``.

A schema marked ``strict`` (OpenAI's flag on a function or a json_schema) must be
enforced in full: a keyword llguidance cannot enforce (``uniqueItems``, ``not``,
``if``/``then``, ``contains``, an unknown ``format``...) is refused. Without
``strict`` such a keyword is ignored, with a warning in the log, and the rest of
the schema is enforced, like OpenAI's best effort for non-strict schemas. A
schema that is wrong (an unknown type, a dangling ``$ref``, an unsatisfiable
``required``) is refused either way.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import llguidance
import numpy as np

from roost.errors import RoostError
from roost.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

logger = logging.getLogger(__name__)

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICES = ("none", "auto", "required")
# json.dumps' separators, no free whitespace: see the module docstring.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
SAFE_INTEGER = 2**53 - 1  # the bound given to integers that have none (see the module docstring)
# Compiled grammars kept per process; a tool list or schema is typically reused by every call of an agent.
CACHE_SIZE = 256


class ConstraintError(RoostError, ValueError):
    """A tool list, tool_choice or response_format cannot be turned into a grammar; says which part and why."""


# ---- validation (no tokenizer needed: the app calls these before it reaches the engine) ----


def validate_tools(tools: Any) -> None:
    """Check an OpenAI ``tools`` list: functions with unique valid names and compilable ``parameters`` schemas.

    None and ``[]`` mean no tools and pass.

    Raises:
        ConstraintError: naming the tool (index and name) and what is wrong with it.
    """
    if tools is not None and not (isinstance(tools, (list, tuple)) and not tools):
        _tool_specs(tools)


def validate_tool_choice(tool_choice: Any, tools: Any) -> str:
    """Check ``tool_choice`` against ``tools``; return ``"none"``, ``"auto"``, ``"required"`` or a tool's name.

    ``None`` means ``"auto"`` when tools are given and ``"none"`` otherwise, as in OpenAI's API.
    """
    names = [spec.name for spec in _tool_specs(tools)] if tools else []  # [] means no tools, as None does
    if tool_choice is None or tool_choice == "none":
        return "auto" if names and tool_choice is None else "none"
    if not names:
        raise ConstraintError(f"tool_choice {json.dumps(tool_choice)} needs a non-empty tools list")
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise ConstraintError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or "
                                  f'{{"type": "function", "function": {{"name": ...}}}}, got {tool_choice!r}')
        return tool_choice
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    if not (isinstance(tool_choice, dict) and tool_choice.get("type") == "function" and isinstance(function, dict)
            and isinstance(function.get("name"), str)):
        raise ConstraintError('tool_choice as an object must be {"type": "function", "function": {"name": ...}}')
    if function["name"] not in names:
        raise ConstraintError(f"tool_choice names function '{function['name']}', which is not in tools "
                              f"(tools: {', '.join(names)})")
    return function["name"]


@dataclass(frozen=True)
class ResponseSchema:
    """The JSON a ``response_format`` asks for, and whether it is ``strict`` (see the module docstring)."""

    schema: dict[str, Any]
    strict: bool = False


def validate_response_format(response_format: Any) -> ResponseSchema | None:
    """Check an OpenAI ``response_format``; return the JSON it asks for, or None for plain text.

    ``json_object`` gives ``{"type": "object"}`` (any JSON object); ``json_schema``
    gives its ``schema`` and ``strict`` flag.
    """
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseSchema(ANY_OBJECT, strict=True)
    if kind != "json_schema":
        raise ConstraintError("response_format.type must be 'text', 'json_object' or 'json_schema', "
                              f"got {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise ConstraintError("response_format.json_schema must be an object with 'name' and 'schema'")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not TOOL_NAME.match(name)):
        raise ConstraintError("response_format.json_schema.name must be 1-64 letters, digits, '_' or '-', "
                              f"got {name!r}")
    strict = spec.get("strict") is True
    schema = spec.get("schema", ANY_OBJECT)
    _check_schema(schema, "response_format.json_schema.schema", strict)
    return ResponseSchema(schema, strict)


# ---- compiling ----


def compile_json_schema(tokenizer: Any, schema: dict[str, Any] | None, *, strict: bool = True) -> Grammar:
    """A grammar for one JSON value matching ``schema`` (None: any JSON object, for ``json_object``).

    ``strict=False`` ignores the keywords llguidance cannot enforce instead of refusing the schema.
    """
    schema = ANY_OBJECT if schema is None else schema
    _check_schema(schema, "schema", strict)
    return _compile(tokenizer, f"start: answer\n{_json_rule('answer', schema, strict)}",
                    "a JSON value matching the schema")


def compile_tool_calls(tokenizer: Any, tools: Sequence[dict[str, Any]], tool_choice: Any = "required", *,
                       parallel_tool_calls: bool = True, response: ResponseSchema | None = None,
                       ) -> Grammar | None:
    """A grammar for tool calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` lines.

    Args:
        tokenizer: the served model's (fast) Hugging Face tokenizer.
        tools: OpenAI ``tools`` entries (``{"type": "function", "function": {...}}``).
        tool_choice: ``"required"`` (one call or more), a named function (only that one),
            ``"auto"`` (free text without ``<tool_call>``, or text followed by calls) or
            ``"none"`` (returns None: decode freely).
        parallel_tool_calls: allow more than one call, one per line.
        response: with ``"auto"``, the answer that is not a tool call must be this
            JSON instead of free text (``response_format`` together with tools).

    Raises:
        ConstraintError: for a bad tool list or tool_choice.
    """
    choice = validate_tool_choice(tool_choice, tools)
    if choice == "none":
        return None if response is None else compile_json_schema(tokenizer, response.schema, strict=response.strict)
    specs = _tool_specs(tools)
    if choice not in ("auto", "required"):
        specs = [spec for spec in specs if spec.name == choice]
    repeat = ' ("\\n" call)*' if parallel_tool_calls else ""
    lines = [f'call: "{TOOL_CALL_OPEN}" tool "{TOOL_CALL_CLOSE}"',
             "tool: " + " | ".join(f"tool_{i}" for i in range(len(specs)))]
    lines += [_json_rule(f"tool_{i}", spec.call_schema, spec.strict) for i, spec in enumerate(specs)]
    if choice != "auto":
        start = f"start: call{repeat}"
        what = "tool calls" if parallel_tool_calls else "one tool call"
    elif response is not None:
        _check_schema(response.schema, "response_format.json_schema.schema", response.strict)
        start = f"start: answer | call{repeat}"
        lines.append(_json_rule("answer", response.schema, response.strict))
        what = "a JSON answer or tool calls"
    else:
        # Free text that never contains the call tag, or text that ends at the first tag and goes on as a call.
        # The lexer follows both terminals at once, so the choice is made when "<tool_call>" is complete.
        start = f'start: TEXT | TEXT_THEN_CALL tool "{TOOL_CALL_CLOSE}"{repeat}'
        any_text, tag = "(?s:.*)", re.escape(TOOL_CALL_OPEN)
        lines.append(f"TEXT: /{any_text}/ & ~/{any_text}{tag}{any_text}/")
        lines.append(f"TEXT_THEN_CALL: /{any_text}{tag}/ & ~/{any_text}{tag}(?s:.+)/")
        what = "free text or tool calls"
    return _compile(tokenizer, "\n".join([start, *lines]), what)


def compile_request(tokenizer: Any, *, tools: Sequence[dict[str, Any]] | None = None, tool_choice: Any = None,
                    response_format: dict[str, Any] | None = None, parallel_tool_calls: bool = True,
                    ) -> Grammar | None:
    """The grammar for a chat request's ``tools``/``tool_choice``/``response_format``; None when unconstrained.

    ``required`` or a named function: tool calls only (``response_format`` then
    shapes nothing, as in OpenAI's API). ``auto``: free text or tool calls, or,
    with a JSON ``response_format``, a JSON answer or tool calls. ``none`` or no
    tools: the ``response_format`` alone.
    """
    response = validate_response_format(response_format)
    choice = validate_tool_choice(tool_choice, tools)
    if choice == "none":
        return None if response is None else compile_json_schema(tokenizer, response.schema, strict=response.strict)
    return compile_tool_calls(tokenizer, tools or [], tool_choice if tool_choice is not None else choice,
                              parallel_tool_calls=parallel_tool_calls, response=response)


class Grammar:
    """A compiled grammar for one tokenizer; start one :class:`Constraint` per request from it.

    Thread-safe: the template matcher is never advanced, only copied (~2 us), so
    constraints can be created on the app's thread while others run on the
    engine's scheduler thread.
    """

    def __init__(self, ll_tokenizer: llguidance.LLTokenizer, source: str, description: str) -> None:
        self.description = description
        self._vocab_size = ll_tokenizer.vocab_size
        self._template = llguidance.LLMatcher(ll_tokenizer, source, log_level=0)
        if self._template.is_error():
            raise ConstraintError(f"cannot compile {description}: {self._template.get_error()}")
        if not self.new_constraint()._any_token_allowed():
            raise ConstraintError(f"cannot compile {description}: no output can satisfy it")

    def new_constraint(self) -> Constraint:
        """Fresh per-request state: a copy of the matcher and its own bitmask buffer."""
        return Constraint(self._template.deep_copy(), self._vocab_size)


class Constraint:
    """One request's decoding state under a grammar (roost.backend.engine.TokenConstraint).

    EOS is allowed only where the grammar accepts; once the value is complete the
    matcher stops and :meth:`is_terminated` turns true, so the engine ends the
    request with ``"stop"`` without waiting for EOS.
    """

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        # One bit per token, 32 to a word, as llguidance writes it: 6 KiB for a 49152-token vocabulary.
        self._bitmask = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._ceiling = np.empty(vocab_size, dtype=np.uint32)
        self._failed = False

    def mask(self, logits: Any) -> None:
        """Set every forbidden token's logit to -inf, in place (a 1-D CPU tensor or numpy array)."""
        if self._failed or self._matcher.is_error():
            logits[:] = float("-inf")  # the engine fails this request alone ("no token is allowed")
            return
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        width = min(int(logits.shape[-1]), self._vocab_size)
        # One byte per token, 1 = forbidden (the inverted bits), ~5 us for 49152 tokens.
        forbidden = np.unpackbits(self._bitmask.view(np.uint8) ^ 0xFF, count=width, bitorder="little")
        array = _float32_view(logits)
        if isinstance(logits, np.ndarray) and array is None:
            np.copyto(logits[:width], -np.inf, where=forbidden.view(np.bool_))
        elif array is None:  # bf16/fp16/fp64 or an accelerator's tensor
            import torch

            logits[:width].masked_fill_(torch.from_numpy(forbidden.view(np.bool_)).to(logits.device), float("-inf"))
        else:
            # A ceiling of +inf (allowed) or -inf (forbidden) as float32 bit patterns, then one np.minimum:
            # 25 us for 49152 tokens, where np.copyto(where=) takes 175 us and torch's masked_fill on two
            # busy cores up to 900 us (its thread pool waits for a core).
            ceiling = self._ceiling[:width]
            np.left_shift(forbidden, 31, out=ceiling, dtype=np.uint32)
            np.bitwise_or(ceiling, _POSITIVE_INF_BITS, out=ceiling)
            np.minimum(array[:width], ceiling.view(np.float32), out=array[:width])
        logits[width:] = float("-inf")  # rows of a padded embedding that no token of the tokenizer uses

    def advance(self, token_id: int) -> None:
        """Accept the sampled token. A token the mask forbade fails the request at the next :meth:`mask`."""
        if self._failed:
            return
        if not self._matcher.consume_token(int(token_id)):
            # Raising here would fail every request in the engine's batch; failing this one is enough.
            self._failed = True
            logger.error("token %d is not allowed by the grammar: %s", token_id, self._matcher.get_error())

    def is_terminated(self) -> bool:
        """True once the grammar has produced a complete value (only EOS could follow)."""
        return not self._failed and self._matcher.is_stopped()

    def is_accepting(self) -> bool:
        """True when the output so far is complete (EOS is allowed), even if more could follow."""
        return not self._failed and self._matcher.is_accepting()

    def _any_token_allowed(self) -> bool:
        """Whether any token (EOS included) is allowed now; used to reject unsatisfiable grammars."""
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        return not self._matcher.is_error() and bool(self._bitmask.any())


_POSITIVE_INF_BITS = np.uint32(0x7F800000)  # float32 +inf; with the sign bit set it is -inf


def _float32_view(logits: Any) -> np.ndarray | None:
    """A numpy view of float32 CPU logits (shares memory), or None when another path must write them."""
    if isinstance(logits, np.ndarray):
        return logits if logits.dtype == np.float32 else None
    if str(logits.dtype) == "torch.float32" and logits.device.type == "cpu" and not logits.requires_grad:
        return logits.numpy()
    return None


# ---- parsing what the model wrote ----


def parse_tool_calls(text: str) -> tuple[list[dict[str, Any]], str]:
    """Split generated text into OpenAI ``tool_calls`` entries and the remaining content.

    Each well-formed ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
    becomes ``{"id": "call_...", "type": "function", "function": {"name", "arguments"}}``
    with ``arguments`` as a JSON string; anything else (text, a call cut short by
    ``max_tokens``) stays in the content, stripped of surrounding whitespace.
    """
    calls: list[dict[str, Any]] = []
    content: list[str] = []
    position = 0
    for match in _CALL.finditer(text):
        call = _tool_call_entry(match.group(1))
        if call is None:
            continue
        content.append(text[position:match.start()])
        position = match.end()
        calls.append(call)
    content.append(text[position:])
    return calls, "".join(content).strip()


@dataclass
class StreamDelta:
    """What one piece of streamed text adds: content text and completed tool calls (with their ``index``)."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class ToolCallStream:
    """Turns streamed text into content deltas and tool-call deltas for SSE chunks.

    Text outside calls streams as content (a possible start of ``<tool_call>`` is
    held back until it is decided); each call is sent whole, in one
    ``delta.tool_calls`` entry, when its closing tag arrives. Whitespace between
    and after calls is dropped. Feeding the text in any pieces gives the same
    result as :func:`parse_tool_calls` on the whole. ``calls`` counts the calls
    sent so far (a finish reason of ``"tool_calls"`` when it is not 0).
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False
        self._pending_space = ""
        self._started = False
        self.calls = 0

    def feed(self, text: str) -> StreamDelta:
        """Add the next piece of generated text; return what can be sent now."""
        self._buffer += text
        delta = StreamDelta()
        while True:
            if self._inside:
                end = self._buffer.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return delta
                body, self._buffer = self._buffer[:end], self._buffer[end + len(TOOL_CALL_CLOSE):]
                self._inside = False
                call = _tool_call_entry(body)
                if call is None:
                    delta.content += self._content(f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}")
                else:
                    delta.tool_calls.append({"index": self.calls, **call})
                    self.calls += 1
                continue
            start = self._buffer.find(TOOL_CALL_OPEN)
            if start >= 0:
                delta.content += self._content(self._buffer[:start])
                self._buffer = self._buffer[start + len(TOOL_CALL_OPEN):]
                self._inside = True
                continue
            keep = _partial_tag_length(self._buffer)
            delta.content += self._content(self._buffer[:len(self._buffer) - keep])
            self._buffer = self._buffer[len(self._buffer) - keep:]
            return delta

    def finish(self) -> StreamDelta:
        """Flush what is left: an unfinished call goes out as content, as parse_tool_calls leaves it."""
        rest = (TOOL_CALL_OPEN if self._inside else "") + self._buffer
        self._buffer, self._inside = "", False
        content = self._content(rest)
        self._pending_space = ""  # trailing whitespace is stripped, as parse_tool_calls does
        return StreamDelta(content=content)

    def _content(self, text: str) -> str:
        """Content to send now: leading whitespace dropped, trailing whitespace held until text follows it."""
        text = self._pending_space + text
        if not self._started:
            text = text.lstrip()
        stripped = text.rstrip()
        self._pending_space = text[len(stripped):]
        self._started = self._started or bool(stripped)
        return stripped


_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


def _tool_call_entry(body: str) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models write the OpenAI wire form, a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _partial_tag_length(text: str) -> int:
    """Length of the longest suffix of ``text`` that could still grow into ``<tool_call>``."""
    for size in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-size:]):
            return size
    return 0


# ---- internals ----


@dataclass(frozen=True)
class _ToolSpec:
    name: str
    parameters: dict[str, Any]
    strict: bool

    @property
    def call_schema(self) -> dict[str, Any]:
        """The JSON the model writes inside the tags: name first, then the arguments object."""
        return {"type": "object", "properties": {"name": {"const": self.name}, "arguments": self.parameters},
                "required": ["name", "arguments"], "additionalProperties": False}


def _tool_specs(tools: Any) -> list[_ToolSpec]:
    if not isinstance(tools, (list, tuple)) or not tools:
        raise ConstraintError("tools must be a non-empty list of {\"type\": \"function\", \"function\": {...}}")
    specs: list[_ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise ConstraintError(f"{where}: only function tools are supported, got {kind!r}")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise ConstraintError(f"{where}: 'function' must be an object with a 'name'")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ConstraintError(f"{where}: function name must be 1-64 letters, digits, '_' or '-', got {name!r}")
        where = f"{where} ('{name}')"
        if name in seen:
            raise ConstraintError(f"{where}: another tool already has this name")
        seen.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise ConstraintError(f"{where}: parameters must be a JSON schema object, "
                                  f"not {type(parameters).__name__}")
        if parameters.get("type", "object") != "object":
            raise ConstraintError(f"{where}: parameters must describe an object (type 'object'), "
                                  f"got type {parameters.get('type')!r}")
        strict = function.get("strict") is True
        _check_schema(parameters, f"{where}: parameters", strict)
        specs.append(_ToolSpec(name, parameters, strict))
    return specs


def _check_schema(schema: Any, where: str, strict: bool) -> None:
    """Raise ConstraintError if ``schema`` cannot be enforced (in full when ``strict``); cached by its JSON text."""
    if not isinstance(schema, dict):
        raise ConstraintError(f"{where} must be a JSON schema object, not {type(schema).__name__}")
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConstraintError(f"{where} is not JSON: {exc}") from None
    key = (text, strict)
    with _LOCK:
        known = _SCHEMA_ERRORS.get(key)
        if known is not None:
            _SCHEMA_ERRORS.move_to_end(key)
    if known is None:
        known = _schema_error(schema, strict)
        if not known and not strict:
            for warning in _schema_warnings(schema):
                logger.warning("%s: not enforced: %s (mark the schema strict to refuse it instead)", where, warning)
        with _LOCK:
            _SCHEMA_ERRORS[key] = known
            while len(_SCHEMA_ERRORS) > CACHE_SIZE:
                _SCHEMA_ERRORS.popitem(last=False)
    if known:
        raise ConstraintError(f"{where} is not a usable JSON schema: {known}")


def _schema_error(schema: dict[str, Any], strict: bool) -> str:
    """llguidance's first error for ``schema`` as roost compiles it, or ""."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(_narrowed(schema), overrides=_json_options(strict))
        error = llguidance.LLMatcher.validate_grammar(grammar)
    except ValueError as exc:
        error = str(exc)
    error = error.strip().splitlines()[0] if error.strip() else ""
    if "coerce_one_of" in error:  # llguidance's hint names an option users cannot set here
        error = "oneOf branches that can match the same value are not supported; use anyOf, or make them disjoint"
    return error


def _schema_warnings(schema: dict[str, Any]) -> list[str]:
    """What a non-strict compile of ``schema`` ignores (llguidance's warnings, first lines)."""
    grammar = llguidance.LLMatcher.grammar_from_json_schema(_narrowed(schema), overrides=_json_options(False))
    _is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    return [message.strip().splitlines()[0] for message in messages if message.strip()]


def _json_options(strict: bool) -> dict[str, Any]:
    # lenient: llguidance ignores the keywords it cannot enforce (and warns) instead of failing.
    return {**JSON_OPTIONS, "lenient": not strict}


def _json_rule(rule: str, schema: dict[str, Any], strict: bool) -> str:
    """A Lark rule embedding a JSON schema, with roost's JSON layout options."""
    # A schema's own x-guidance options are replaced: the layout and strictness are roost's.
    return f"{rule}: %json {json.dumps({**_narrowed(schema), 'x-guidance': _json_options(strict)})}"


def _narrowed(schema: Any) -> Any:
    """A copy of ``schema`` with closed objects and bounded integers (see the module docstring).

    Only where that keeps every output valid under the original: inside ``anyOf``,
    ``items`` and the like, not inside ``oneOf`` or ``not`` (a narrowed branch matches
    fewer values, which can make ``oneOf``/``not`` accept more). A schema that uses
    ``allOf`` anywhere keeps its objects open: its branches, or the ``$defs`` they
    refer to, may each define part of one object's keys.
    """
    return _narrow(schema, close=not _uses_all_of(schema))


def _uses_all_of(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "allOf" in schema or any(_uses_all_of(value) for value in schema.values())
    return isinstance(schema, list) and any(_uses_all_of(item) for item in schema)


def _narrow(schema: Any, close: bool) -> Any:
    if isinstance(schema, list):
        return [_narrow(item, close) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            out[key] = {k: _narrow(v, close) for k, v in value.items()} if isinstance(value, dict) else value
        elif key in ("items", "prefixItems", "additionalProperties", "anyOf", "contains"):
            out[key] = _narrow(value, close)
        else:  # enum/const values are data, not schemas; oneOf/not stay as they are (see above)
            out[key] = value
    if close and isinstance(out.get("properties"), dict) and not any(
            k in out for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")):
        out["additionalProperties"] = False
    types = out.get("type")
    if types == "integer" or (isinstance(types, list) and "integer" in types and "number" not in types):
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = SAFE_INTEGER
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -SAFE_INTEGER
    return out


_LOCK = threading.Lock()
_TOKENIZERS: dict[int, tuple[Any, Any]] = {}
_GRAMMARS: OrderedDict[tuple[int, str], Grammar] = OrderedDict()
_SCHEMA_ERRORS: OrderedDict[tuple[str, bool], str] = OrderedDict()


def _compile(tokenizer: Any, lark: str, description: str) -> Grammar:
    ll_tokenizer = _ll_tokenizer(tokenizer)
    key = (id(ll_tokenizer), lark)
    with _LOCK:
        grammar = _GRAMMARS.get(key)
        if grammar is not None:
            _GRAMMARS.move_to_end(key)
            return grammar
    source = llguidance.LLMatcher.grammar_from_lark(lark)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(source, ll_tokenizer)
    if is_error:
        raise ConstraintError(f"cannot compile {description}: {messages[0].strip().splitlines()[0]}")
    grammar = Grammar(ll_tokenizer, source, description)
    with _LOCK:
        _GRAMMARS[key] = grammar
        while len(_GRAMMARS) > CACHE_SIZE:
            _GRAMMARS.popitem(last=False)
    return grammar


def _ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of a Hugging Face tokenizer (~0.5 s to build, so kept per tokenizer object)."""
    with _LOCK:
        entry = _TOKENIZERS.get(id(tokenizer))
        if entry is not None and entry[0] is tokenizer:
            return entry[1]
    import llguidance.hf

    try:
        ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
    except ValueError as exc:  # a slow (Python) tokenizer: llguidance needs the Rust one
        raise ConstraintError(f"tools and response_format need a fast tokenizer for this model: {exc}") from None
    with _LOCK:
        # Holding the tokenizer keeps its id from being reused by another object while cached.
        _TOKENIZERS[id(tokenizer)] = (tokenizer, ll_tokenizer)
    return ll_tokenizer
