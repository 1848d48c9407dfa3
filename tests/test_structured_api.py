"""Tool calls and structured output through the HTTP API, guaranteed by constrained decoding.

A random tiny model sampling at temperature 1 writes garbage on its own; every answer
here must still parse and validate, streamed and not, through the real openai client.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import openai
import pytest

from roost.backend.app import create_app
from roost.config import load_settings
from roost.models import pull
from tests.servers import in_process

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "kind": {"enum": ["capital", "port", "village"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "size": {"type": "integer", "minimum": 0, "maximum": 9999},
        "where": {"type": "object", "properties": {"north": {"type": "boolean"}}, "required": ["north"]},
    },
    "required": ["city", "kind", "tags", "size", "where"],
}
TOOLS = [
    {"type": "function", "function": {
        "name": "add", "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": -999, "maximum": 999},
                                                        "b": {"type": "integer", "minimum": -999, "maximum": 999}},
                       "required": ["a", "b"]}}},
    {"type": "function", "function": {
        "name": "lookup", "description": "Find a word.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string", "maxLength": 8},
                                                        "lang": {"enum": ["en", "fr"]}},
                       "required": ["word", "lang"]}}},
]
PARAMS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
ASK = [{"role": "user", "content": "What is 2 + 3? Use a tool."}]


@pytest.fixture
def tiny_app(tiny_model_dir: Path):
    from roost.backend.transformers_engine import TransformersEngine

    Path("roost.toml").write_text('[aliases.default]\nbase = "tiny"\n')
    settings = load_settings()
    pull(str(tiny_model_dir), name="tiny", settings=settings, progress=False)
    return create_app(TransformersEngine(settings, dtype="float32", threads=1), settings)


def assert_valid_call(call) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])


@pytest.mark.asyncio
async def test_json_schema_answers_always_validate(tiny_app) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}}
    async with in_process(tiny_app) as (client, _):
        plain = await client.chat.completions.create(model="default", messages=ASK, n=25, temperature=1, seed=1,
                                                     max_tokens=160, response_format=fmt)
        stream = await client.chat.completions.create(model="default", messages=ASK, n=25, temperature=1, seed=2,
                                                      max_tokens=160, response_format=fmt, stream=True)
        streamed = [""] * 25
        async for chunk in stream:
            for choice in chunk.choices:
                streamed[choice.index] += choice.delta.content or ""
        obj = await client.chat.completions.create(model="default", messages=ASK, temperature=1, max_tokens=60,
                                                   seed=5, response_format={"type": "json_object"})
    texts = [c.message.content for c in plain.choices] + streamed
    assert len(texts) == 50
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(set(texts)) > 1  # sampled, not one canned answer
    # json_object allows keys of any length, which a random model may not close within 60 tokens;
    # the grammar still forces an object from the first character, and a finished one parses.
    answer = obj.choices[0]
    assert answer.message.content.startswith("{")
    if answer.finish_reason == "stop":
        assert isinstance(json.loads(answer.message.content), dict)


@pytest.mark.asyncio
async def test_required_tool_calls_always_have_valid_arguments(tiny_app) -> None:
    async with in_process(tiny_app) as (client, _):
        plain = await client.chat.completions.create(model="default", messages=ASK, n=25, temperature=1, seed=3,
                                                     max_tokens=120, tools=TOOLS, tool_choice="required",
                                                     parallel_tool_calls=False)
        stream = await client.chat.completions.create(model="default", messages=ASK, n=25, temperature=1, seed=4,
                                                      max_tokens=120, tools=TOOLS, tool_choice="required",
                                                      parallel_tool_calls=False, stream=True)
        streamed: dict[int, list] = {i: [] for i in range(25)}
        finishes: dict[int, str] = {}
        async for chunk in stream:
            for choice in chunk.choices:
                streamed[choice.index] += choice.delta.tool_calls or []
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
        named = await client.chat.completions.create(
            model="default", messages=ASK, temperature=1, seed=6, max_tokens=120, tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "lookup"}})
    for choice in plain.choices:
        assert choice.finish_reason == "tool_calls"
        assert len(choice.message.tool_calls) == 1
        assert_valid_call(choice.message.tool_calls[0])
    for i, calls in streamed.items():
        assert finishes[i] == "tool_calls" and len(calls) == 1
        assert_valid_call(calls[0])
    names = {c.message.tool_calls[0].function.name for c in plain.choices}
    assert names <= {"add", "lookup"}
    named_calls = named.choices[0].message.tool_calls  # parallel calls allowed here: one or more, all 'lookup'
    assert named_calls and {c.function.name for c in named_calls} == {"lookup"}
    for call in named_calls:
        assert_valid_call(call)


@pytest.mark.asyncio
async def test_bad_tools_and_formats_are_400(tiny_app) -> None:
    async with in_process(tiny_app) as (client, _):
        cases = [
            ({"tools": [{"type": "function", "function": {"parameters": {"type": "object"}}}]}, "tools"),
            ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
            ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nah"}}}},
             "response_format"),
            ({"response_format": {"type": "yaml"}}, "response_format"),
        ]
        for extra, param in cases:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(model="default", messages=ASK, max_tokens=8, **extra)
            assert info.value.status_code == 400
            assert info.value.body["param"] == param, info.value.body


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_default_model_tool_call_and_json_schema(default_model_home: Path) -> None:
    from roost.backend.transformers_engine import TransformersEngine

    settings = load_settings(env={"ROOST_HOME": str(default_model_home)})
    app = create_app(TransformersEngine(settings, ["default"], threads=1), settings)
    weather = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                        "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"]}}}]
    person = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 150}},
              "required": ["name", "age"]}
    async with in_process(app) as (client, _):
        call = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=weather, tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=60)
        answer = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Invent a person: a name and an age."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": person}},
            temperature=0, max_tokens=60)
    tool_call = call.choices[0].message.tool_calls[0]
    assert call.choices[0].finish_reason == "tool_calls" and tool_call.function.name == "get_weather"
    jsonschema.validate(json.loads(tool_call.function.arguments), weather[0]["function"]["parameters"])
    jsonschema.validate(json.loads(answer.choices[0].message.content), person)
