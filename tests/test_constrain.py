"""Constrained decoding: a random tiny model sampling at temperature 1 still writes valid JSON and tool calls."""

from __future__ import annotations

import json
import random
import threading

import jsonschema
import pytest
import torch

from roost.backend.constrain import (
    ConstraintError,
    ToolCallStream,
    compile_json_schema,
    compile_request,
    compile_tool_calls,
    parse_tool_calls,
    validate_response_format,
    validate_tool_choice,
    validate_tools,
)
from roost.prompts import encode, render_chat

# Every string bounded (maxLength, enum) and every integer bounded, so each output is at most a few
# hundred bytes: a token is at least one byte, so the grammar completes within the token budget below.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12},
                           "zip": {"type": "integer", "minimum": 10000, "maximum": 99999}},
            "required": ["city"],
        },
    },
    "required": ["name", "age", "role", "address"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "search", "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string", "maxLength": 24},
                       "sites": {"type": "array", "items": {"enum": ["wiki", "news", "docs"]}, "maxItems": 2}},
        "required": ["query"]}}},
    {"type": "function", "function": {"name": "now"}},
]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in TOOLS}
BUDGET = 700  # above the longest output the schemas above allow, in bytes


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompt_ids(tokenizer) -> list[int]:
    return encode(tokenizer, render_chat(tokenizer, [{"role": "user", "content": "Answer in JSON."}], tools=TOOLS))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these steps are tiny, and a second thread mostly waits for a core on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.inference_mode()
def sample(model, tokenizer, prompt_ids: list[int], constraints: list, max_new_tokens: int = BUDGET,
           seed: int = 0) -> list[tuple[str, bool]]:
    """Decode one row per constraint at temperature 1: forward, mask, sample, advance. Returns (text, finished)."""
    generator = torch.Generator().manual_seed(seed)
    eos = tokenizer.eos_token_id
    # Prefill the shared prompt once, then copy its cache to every row.
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(len(constraints))
    logits = out.logits[:, -1].float().repeat(len(constraints), 1)
    outputs: list[list[int]] = [[] for _ in constraints]
    finished = [False] * len(constraints)
    active = list(range(len(constraints)))  # rows still decoding, in the order of the batch
    for _ in range(max_new_tokens):
        for row, i in enumerate(active):
            constraints[i].mask(logits[row])
        # Exact sampling by inverse CDF: 5x cheaper than torch.multinomial over 49152 tokens on this CPU.
        # side="right" never lands on a zero-probability (masked) token.
        cdf = torch.softmax(logits, -1).cumsum(-1)
        point = torch.rand(len(active), 1, generator=generator) * cdf[:, -1:]
        picked = torch.searchsorted(cdf, point, side="right").clamp_(max=logits.shape[-1] - 1)
        for row, i in enumerate(active):
            token = int(picked[row])
            constraints[i].advance(token)
            finished[i] = token == eos or constraints[i].is_terminated()
            if token != eos:
                outputs[i].append(token)
        keep = [row for row, i in enumerate(active) if not finished[i]]
        if not keep:
            break
        if len(keep) < len(active):  # drop finished rows from the batch and its cache
            cache.batch_select_indices(torch.tensor(keep))
            picked, active = picked[keep], [active[row] for row in keep]
        out = model(input_ids=picked, cache=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1].float()
    return [(tokenizer.decode(ids), done) for ids, done in zip(outputs, finished, strict=True)]


def test_json_schema_outputs_all_validate(tiny_model, tokenizer, prompt_ids) -> None:
    grammar = compile_json_schema(tokenizer, PERSON)
    results = sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(50)])
    assert all(done for _, done in results), "a bounded schema must complete within the byte budget"
    for text, _ in results:
        jsonschema.validate(json.loads(text), PERSON)
    # Random sampling really explored the schema rather than one fixed answer.
    assert len({text for text, _ in results}) == 50
    assert {json.loads(text)["role"] for text, _ in results} == {"admin", "user", "guest"}


def test_required_tool_calls_all_have_valid_arguments(tiny_model, tokenizer, prompt_ids) -> None:
    grammar = compile_tool_calls(tokenizer, TOOLS, "required", parallel_tool_calls=False)
    results = sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(50)], seed=1)
    names = set()
    for text, done in results:
        assert done
        calls, content = parse_tool_calls(text)
        assert content == "" and len(calls) == 1, text
        function = calls[0]["function"]
        names.add(function["name"])
        jsonschema.validate(json.loads(function["arguments"]), SCHEMAS[function["name"]])
        assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert names == set(SCHEMAS)


def test_parallel_tool_calls_each_validate(tiny_model, tokenizer, prompt_ids) -> None:
    grammar = compile_tool_calls(tokenizer, TOOLS, "required")
    results = sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(12)],
                     max_new_tokens=300, seed=2)
    counts = []
    for text, done in results:
        calls, content = parse_tool_calls(text)
        # A row cut by the token budget ends inside a call: every call before it is complete and valid.
        assert content == "" if done else content.startswith("<tool_call>"), text
        counts.append(len(calls))
        for call in calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
    assert max(counts) >= 2 and any(done for _, done in results)


def test_named_tool_choice_forces_that_tool(tiny_model, tokenizer, prompt_ids) -> None:
    choice = {"type": "function", "function": {"name": "search"}}
    grammar = compile_tool_calls(tokenizer, TOOLS, choice, parallel_tool_calls=False)
    for text, done in sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(20)],
                             seed=3):
        calls, _ = parse_tool_calls(text)
        assert done and [c["function"]["name"] for c in calls] == ["search"]
        jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), SCHEMAS["search"])


def test_json_object_gives_an_object(tiny_model, tokenizer, prompt_ids) -> None:
    grammar = compile_request(tokenizer, response_format={"type": "json_object"})
    results = sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(30)],
                     max_new_tokens=120, seed=4)
    # Any object may be arbitrarily long, so some rows hit the budget (the engine then says "length").
    complete = [json.loads(text) for text, done in results if done]
    assert len(complete) >= 10 and all(isinstance(value, dict) for value in complete)
    assert all(text.startswith("{") for text, _ in results)


def test_auto_gives_free_text_or_valid_calls(tiny_model, tokenizer, prompt_ids) -> None:
    grammar = compile_tool_calls(tokenizer, TOOLS, "auto")
    results = sample(tiny_model, tokenizer, prompt_ids, [grammar.new_constraint() for _ in range(10)],
                     max_new_tokens=40, seed=5)
    for text, _ in results:
        calls, content = parse_tool_calls(text)
        assert "<tool_call>" not in content
        for call in calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])


def _feed(grammar, tokenizer, text: str):
    constraint = grammar.new_constraint()
    ids = encode(tokenizer, text)
    accepted = constraint._matcher.try_consume_tokens(ids)
    return constraint, accepted == len(ids)


def test_auto_grammar_accepts_text_then_calls_and_rejects_bad_arguments(tokenizer) -> None:
    grammar = compile_tool_calls(tokenizer, TOOLS, "auto")
    good = '<tool_call>{"name": "now", "arguments": {}}</tool_call>'
    constraint, ok = _feed(grammar, tokenizer, "Let me check the weather.")
    assert ok and constraint.is_accepting() and not constraint.is_terminated()
    assert _feed(grammar, tokenizer, f"Checking. {good}\n{good}")[1]
    assert not _feed(grammar, tokenizer, '<tool_call>{"name": "get_weather", "arguments": {"city": 3}}')[1]
    assert not _feed(grammar, tokenizer, '<tool_call>{"name": "delete_all", "arguments": {}}')[1]
    single = compile_tool_calls(tokenizer, TOOLS, "auto", parallel_tool_calls=False)
    constraint, ok = _feed(single, tokenizer, good)
    assert ok and constraint.is_terminated()


def test_auto_with_response_format_is_json_answer_or_calls(tokenizer) -> None:
    grammar = compile_request(tokenizer, tools=TOOLS, tool_choice="auto", response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
    answer = json.dumps({"name": "Ann", "age": 3, "role": "user", "address": {"city": "Oslo"}})
    assert _feed(grammar, tokenizer, answer)[0].is_terminated()
    assert _feed(grammar, tokenizer, '<tool_call>{"name": "now", "arguments": {}}</tool_call>')[1]
    assert not _feed(grammar, tokenizer, "Hello")[1]
    assert compile_request(tokenizer, tools=TOOLS, tool_choice="none") is None
    assert compile_request(tokenizer) is None
    assert compile_request(tokenizer, response_format={"type": "text"}) is None


def test_eos_only_when_the_value_is_complete(tokenizer) -> None:
    grammar = compile_json_schema(tokenizer, {"type": "object", "properties": {"a": {"type": "integer"}}})
    eos = tokenizer.eos_token_id
    constraint = grammar.new_constraint()
    logits = torch.zeros(len(tokenizer))
    constraint.mask(logits)
    allowed = torch.isfinite(logits).nonzero().flatten().tolist()
    assert eos not in allowed and tokenizer.decode(allowed[:1]).startswith("{")
    for token in encode(tokenizer, '{"a": 12}'):
        assert not constraint.is_terminated()
        constraint.advance(token)
    assert constraint.is_terminated()
    logits = torch.zeros(len(tokenizer))
    constraint.mask(logits)
    assert torch.isfinite(logits).nonzero().flatten().tolist() == [eos]


def test_extra_keys_are_refused_unless_the_schema_allows_them(tokenizer) -> None:
    closed = compile_json_schema(tokenizer, {"type": "object", "properties": {"a": {"type": "integer"}}})
    assert not _feed(closed, tokenizer, '{"a": 1, "b": 2}')[1]
    open_ = compile_json_schema(tokenizer, {"type": "object", "properties": {"a": {"type": "integer"}},
                                            "additionalProperties": {"type": "integer"}})
    assert _feed(open_, tokenizer, '{"a": 1, "b": 2}')[0].is_accepting()


def test_unbounded_integers_stop_at_sixteen_digits(tokenizer) -> None:
    """A model repeating a digit must end the number: bounded to JSON's safe integers, 2**53 - 1."""
    grammar = compile_json_schema(tokenizer, {"type": "object", "properties": {"n": {"type": "integer"}}})
    assert _feed(grammar, tokenizer, '{"n": -9007199254740991}')[0].is_terminated()
    assert not _feed(grammar, tokenizer, '{"n": 11111111111111111')[1]
    wide = compile_json_schema(tokenizer, {"type": "object", "properties": {"n": {"type": "integer",
                                                                                  "maximum": 10**18}}})
    assert _feed(wide, tokenizer, '{"n": 11111111111111111}')[0].is_terminated()


def test_mask_handles_other_dtypes_and_a_padded_vocabulary(tokenizer) -> None:
    grammar = compile_json_schema(tokenizer, None)
    reference = torch.zeros(len(tokenizer))
    grammar.new_constraint().mask(reference)
    assert 0 < int(torch.isfinite(reference).sum()) < len(tokenizer)
    for other in (torch.zeros(len(tokenizer), dtype=torch.bfloat16), torch.zeros(len(tokenizer), dtype=torch.float64),
                  torch.zeros(len(tokenizer)).numpy().astype("float64")):
        grammar.new_constraint().mask(other)
        assert torch.equal(torch.isfinite(torch.as_tensor(other)), torch.isfinite(reference))
    padded = torch.zeros(2, len(tokenizer) + 64)  # a model whose embedding has rows beyond the tokenizer
    grammar.new_constraint().mask(padded[1])
    assert torch.equal(torch.isfinite(padded[1, :len(tokenizer)]), torch.isfinite(reference))
    assert not torch.isfinite(padded[1, len(tokenizer):]).any() and torch.isfinite(padded[0]).all()


def test_a_forbidden_token_fails_only_its_own_request(tokenizer) -> None:
    grammar = compile_json_schema(tokenizer, None)
    broken, healthy = grammar.new_constraint(), grammar.new_constraint()
    broken.advance(encode(tokenizer, "hello")[0])  # not "{": the engine would never sample it
    logits = torch.zeros(len(tokenizer))
    broken.mask(logits)
    assert not torch.isfinite(logits).any() and not broken.is_terminated()
    logits = torch.zeros(len(tokenizer))
    healthy.mask(logits)
    assert torch.isfinite(logits).sum() > 0


def test_constraints_are_created_and_driven_on_other_threads(tokenizer) -> None:
    grammar = compile_json_schema(tokenizer, {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                              "required": ["ok"]})
    ids = encode(tokenizer, '{"ok": true}')
    results: list[bool] = []

    def drive() -> None:
        constraint = grammar.new_constraint()
        for token in ids:
            logits = torch.zeros(len(tokenizer))
            constraint.mask(logits)
            assert torch.isfinite(logits[token])
            constraint.advance(token)
        results.append(constraint.is_terminated())

    threads = [threading.Thread(target=drive) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8


def test_grammars_are_cached_per_tokenizer_and_schema(tokenizer) -> None:
    assert compile_json_schema(tokenizer, PERSON) is compile_json_schema(tokenizer, json.loads(json.dumps(PERSON)))
    assert compile_json_schema(tokenizer, PERSON) is not compile_json_schema(tokenizer, None)
    assert compile_tool_calls(tokenizer, TOOLS, "required") is not compile_tool_calls(tokenizer, TOOLS, "auto")


@pytest.mark.parametrize(("tools", "message"), [
    ({"type": "function"}, "non-empty list"),
    ([{"type": "retrieval"}], "tools[0]: only function tools"),
    ([{"type": "function"}], "tools[0]: 'function' must be an object"),
    ([{"type": "function", "function": {"name": "bad name!"}}], "tools[0]: function name must be"),
    ([TOOLS[2], TOOLS[2]], "tools[1] ('now'): another tool already has this name"),
    ([TOOLS[0], {"type": "function", "function": {"name": "f", "parameters": []}}],
     "tools[1] ('f'): parameters must be a JSON schema object, not list"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
     "tools[0] ('f'): parameters must describe an object"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "strin"}}}}}], "tools[0] ('f'): parameters is not a usable"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}}}], "does not exist"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "(unclosed"}}}}}], "regex parse error"),
])
def test_bad_tools_are_rejected_with_the_reason(tools, message: str) -> None:
    with pytest.raises(ConstraintError) as info:
        validate_tools(tools)
    assert message in str(info.value)


@pytest.mark.parametrize(("choice", "tools", "message"), [
    ("sometimes", TOOLS, "tool_choice must be one of"),
    ("required", None, "needs a non-empty tools list"),
    ({"type": "function", "function": {"name": "fly"}}, TOOLS, "'fly', which is not in tools"),
    ({"type": "function", "name": "now"}, TOOLS, "tool_choice as an object must be"),
])
def test_bad_tool_choice_is_rejected(choice, tools, message: str) -> None:
    with pytest.raises(ConstraintError, match=message):
        validate_tool_choice(choice, tools)


def test_closing_objects_never_admits_what_the_schema_refuses(tokenizer) -> None:
    # Open, both branches match {"a": 1}, which oneOf then refuses; closed, only the first would match it.
    # Such a oneOf cannot be guaranteed, so it is refused rather than approximated.
    one_of = {"oneOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                        {"type": "object", "properties": {"b": {"type": "integer"}}}]}
    with pytest.raises(ConstraintError, match="oneOf branches that can match the same value"):
        compile_json_schema(tokenizer, one_of)
    disjoint = {"oneOf": [{"type": "integer"}, {"type": "object", "properties": {"b": {"type": "integer"}}}]}
    assert _feed(compile_json_schema(tokenizer, disjoint), tokenizer, '{"b": 2}')[0].is_accepting()
    # allOf branches each define part of the keys: closing them would make this schema unsatisfiable.
    all_of = {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                        {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}]}
    assert _feed(compile_json_schema(tokenizer, all_of), tokenizer, '{"a": 1, "b": 2}')[0].is_accepting()


def test_strict_schemas_refuse_what_cannot_be_enforced_others_ignore_it(tokenizer, caplog) -> None:
    unique = {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"},
                                                       "uniqueItems": True, "maxItems": 3}}}
    strict = [{"type": "function", "function": {"name": "f", "parameters": unique, "strict": True}}]
    with pytest.raises(ConstraintError, match=r"tools\[0\] \('f'\): parameters is not a usable.*uniqueItems"):
        validate_tools(strict)
    loose = [{"type": "function", "function": {"name": "f", "parameters": unique}}]
    with caplog.at_level("WARNING", logger="roost.backend.constrain"):
        validate_tools(loose)
    assert "not enforced" in caplog.text and "uniqueItems" in caplog.text
    # Everything else in the loose schema is still enforced.
    grammar = compile_tool_calls(tokenizer, loose, "required")
    assert _feed(grammar, tokenizer, '<tool_call>{"name": "f", "arguments": {"ids": [1, 1]}}</tool_call>')[1]
    assert not _feed(grammar, tokenizer, '<tool_call>{"name": "f", "arguments": {"ids": ["a"]}}</tool_call>')[1]
    with pytest.raises(ConstraintError, match="uniqueItems"):
        validate_response_format({"type": "json_schema", "json_schema": {"name": "u", "schema": unique,
                                                                          "strict": True}})
    response = validate_response_format({"type": "json_schema", "json_schema": {"name": "u", "schema": unique}})
    assert response is not None and response.schema == unique and not response.strict


def test_no_tools_is_not_an_error() -> None:
    validate_tools(None)
    validate_tools([])
    assert validate_tool_choice(None, []) == "none"


def test_tool_choice_defaults_follow_openai() -> None:
    assert validate_tool_choice(None, TOOLS) == "auto"
    assert validate_tool_choice(None, None) == "none"
    assert validate_tool_choice("none", None) == "none"
    assert validate_tool_choice({"type": "function", "function": {"name": "now"}}, TOOLS) == "now"


@pytest.mark.parametrize(("response_format", "message"), [
    ({"type": "xml"}, "response_format.type must be"),
    ({"type": "json_schema"}, "json_schema must be an object"),
    ({"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}}, "name must be"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "required": ["x"],
                                                                      "additionalProperties": False}}},
     "unsatisfiable"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}}, "unsatisfiable"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": "object"}}, "must be a JSON schema object"),
])
def test_bad_response_format_is_rejected(response_format, message: str) -> None:
    with pytest.raises(ConstraintError, match=message):
        validate_response_format(response_format)


def test_parse_tool_calls_keeps_text_and_broken_calls_as_content() -> None:
    text = ('Sure. <tool_call>{"name": "now", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"x\\"}"}</tool_call>\n'
            '<tool_call>{not json}</tool_call> <tool_call>{"name": "cut')
    calls, content = parse_tool_calls(text)
    assert [c["function"]["name"] for c in calls] == ["now", "search"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{}, {"query": "x"}]
    assert len({c["id"] for c in calls}) == 2
    assert content == 'Sure. \n\n<tool_call>{not json}</tool_call> <tool_call>{"name": "cut'
    assert parse_tool_calls("plain answer\n") == ([], "plain answer")


@pytest.mark.parametrize("text", [
    'Sure. <tool_call>{"name": "now", "arguments": {}}</tool_call>\n<tool_call>{"name": "search", '
    '"arguments": {"query": "a < b"}}</tool_call>',
    "  no calls here, just <tool a < b text  ",
    '<tool_call>{"name": "now", "arguments": {}}</tool_call> and then <tool_call>{bad}</tool_call> end <tool_c',
])
def test_streamed_tool_calls_match_the_whole_text(text: str) -> None:
    calls, content = parse_tool_calls(text)
    rng = random.Random(0)
    for _ in range(20):
        stream, pieces, position = ToolCallStream(), [], 0
        while position < len(text):
            step = rng.randint(1, 7)
            pieces.append(stream.feed(text[position:position + step]))
            position += step
        pieces.append(stream.finish())
        assert "".join(p.content for p in pieces) == content
        streamed = [call for p in pieces for call in p.tool_calls]
        assert [c["index"] for c in streamed] == list(range(len(calls)))
        assert [c["function"] for c in streamed] == [c["function"] for c in calls]


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir):
    from roost.config import load_settings
    from roost.models import pull

    home = tmp_path_factory.mktemp("constrain-engine") / "home"
    pull(str(tiny_model_dir), name="tiny", settings=load_settings(env={"ROOST_HOME": str(home)}), progress=False)
    return home


def test_engine_batches_constrained_requests_and_all_validate(engine_home, tokenizer, prompt_ids) -> None:
    """Through the transformers engine: 50 json_schema and 50 tool-call requests at temperature 1, batched together."""
    import asyncio

    from roost.backend.engine import GenerationRequest, SamplingParams
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings

    async def run() -> list[tuple[int, str, str | None]]:
        engine = TransformersEngine(load_settings(env={"ROOST_HOME": str(engine_home)}), models=["tiny"],
                                    dtype="float32", max_batch_size=16, max_queue=128)
        await engine.start()
        try:
            served = engine.tokenizer("tiny")
            grammars = [compile_json_schema(served, PERSON),
                        compile_tool_calls(served, TOOLS, "required", parallel_tool_calls=False)]

            async def one(i: int) -> tuple[int, str, str | None]:
                request = GenerationRequest(request_id=f"r{i}", model="tiny", prompt_ids=prompt_ids,
                                            params=SamplingParams(max_tokens=BUDGET, temperature=1.0, seed=i),
                                            constraint=grammars[i % 2].new_constraint())
                text, finish = "", None
                async for chunk in engine.generate(request):
                    text, finish = text + chunk.text, chunk.finish_reason
                return i, text, finish

            return await asyncio.gather(*(one(i) for i in range(100)))
        finally:
            await engine.stop()

    results = asyncio.run(run())
    names = set()
    for i, text, finish in results:
        assert finish == "stop", (i, text)
        if i % 2 == 0:
            jsonschema.validate(json.loads(text), PERSON)
        else:
            calls, content = parse_tool_calls(text)
            assert content == "" and len(calls) == 1
            function = calls[0]["function"]
            names.add(function["name"])
            jsonschema.validate(json.loads(function["arguments"]), SCHEMAS[function["name"]])
    # Each request sampled on its own (seeded) generator: answers differ, and every tool gets called.
    assert len({text for i, text, _ in results if i % 2 == 0}) == 50 and names == set(SCHEMAS)


@pytest.mark.e2e
def test_default_model_writes_a_valid_tool_call_and_json_answer(default_model_home) -> None:
    """The real default model through the engine: a required tool call and a json_schema answer, both valid."""
    import asyncio

    from roost.backend.engine import GenerationRequest, SamplingParams
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings

    weather = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                "unit": {"enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"]}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                               "parameters": weather}}]
    answer = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 40},
                                               "population_millions": {"type": "integer", "minimum": 0,
                                                                       "maximum": 100}},
              "required": ["capital", "population_millions"]}

    async def run() -> list[str]:
        engine = TransformersEngine(load_settings(env={"ROOST_HOME": str(default_model_home)}), max_batch_size=2)
        await engine.start()
        try:
            name = engine.models()[0].name
            tok = engine.tokenizer(name)
            asks = [([{"role": "user", "content": "What is the weather in Paris?"}], tools,
                     compile_tool_calls(tok, tools, "required", parallel_tool_calls=False)),
                    ([{"role": "user", "content": "What is the capital of France? Answer in JSON."}], None,
                     compile_json_schema(tok, answer))]

            async def one(messages, with_tools, grammar) -> str:
                prompt = encode(tok, render_chat(tok, messages, tools=with_tools))
                request = GenerationRequest(request_id=str(len(prompt)), model=name, prompt_ids=prompt,
                                            params=SamplingParams(max_tokens=96, temperature=0.0),
                                            constraint=grammar.new_constraint())
                return "".join([chunk.text async for chunk in engine.generate(request)])

            return await asyncio.gather(*(one(*ask) for ask in asks))
        finally:
            await engine.stop()

    call_text, answer_text = asyncio.run(run())
    calls, content = parse_tool_calls(call_text)
    assert content == "" and [c["function"]["name"] for c in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), weather)
    jsonschema.validate(json.loads(answer_text), answer)
