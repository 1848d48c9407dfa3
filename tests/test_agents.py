"""The AutoGen teams and the CrewAI crew.

AutoGen teams run on ReplayChatCompletionClient (scripted replies, no backend):
the termination conditions, tool calls and speaker selection are AutoGen's own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.tools import count_words, lookup_term
from roost.errors import RoostError


def test_lookup_term_finds_terms_and_lists_the_known_ones() -> None:
    assert lookup_term("Caller tags").startswith("caller tag: The X-Roost-Caller header")
    assert lookup_term("alias").startswith("alias: A short model name")
    assert "known terms: adapter, alias" in lookup_term("quantum flux")
    assert count_words("one two  three\nfour") == 4


def test_tool_schemas_keep_their_argument_constraints_in_every_framework() -> None:
    from agents.autogen_common import typed_tool
    from agents.crew import crew_tool, require_crewai

    require_crewai()
    term = typed_tool(lookup_term).schema["parameters"]["properties"]["term"]
    assert term["pattern"] == "^[A-Za-z][A-Za-z -]*$" and term["maxLength"] == 40
    crew_lookup = crew_tool(lookup_term)
    assert crew_lookup.args_schema.model_json_schema()["properties"]["term"]["pattern"] == term["pattern"]
    assert crew_lookup.run(term="adapters").startswith("adapter: A LoRA fine-tune")


def test_crew_researcher_must_look_the_term_up_until_a_tool_answers() -> None:
    import httpx

    from agents.crew import require_crewai, require_tool_first

    require_crewai()
    interceptor = require_tool_first("lookup_term")
    tools = [{"type": "function", "function": {"name": "lookup_term", "parameters": {}}}]

    def send(messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
        request = httpx.Request("POST", "http://roost.test/v1/chat/completions",
                                json={"model": "default", "messages": messages, **body})
        out = interceptor.on_outbound(request)
        assert int(out.headers["content-length"]) == len(out.content)
        return json.loads(out.content)

    first = send([{"role": "user", "content": "Look up adapter"}], tools=tools, tool_choice="auto")
    assert first["tool_choice"] == {"type": "function", "function": {"name": "lookup_term"}}
    assert first["parallel_tool_calls"] is False
    after = send([{"role": "user", "content": "x"}, {"role": "tool", "content": "adapter: ..."}], tools=tools,
                 tool_choice="auto")
    assert after["tool_choice"] == "auto"  # the tool has answered: the model may now write its answer
    assert "tool_choice" not in send([{"role": "user", "content": "Summarise."}])


# AutoGen -----------------------------------------------------------------------------------

autogen = pytest.importorskip("autogen_agentchat")


def replay(*replies: Any) -> Any:
    from autogen_core.models import ModelInfo
    from autogen_ext.models.replay import ReplayChatCompletionClient

    info = ModelInfo(vision=False, function_calling=True, json_output=True, family="unknown", structured_output=True)
    return ReplayChatCompletionClient(list(replies), model_info=info)


def recording_replay(*replies: Any) -> Any:
    """A replay client that also records the tool_choice of each call."""
    from autogen_ext.models.replay import ReplayChatCompletionClient

    class Recording(ReplayChatCompletionClient):
        tool_choices: list[Any] = []

        async def create(self, messages: Any, *, tool_choice: Any = "auto", **kwargs: Any) -> Any:
            self.tool_choices.append(tool_choice)
            return await super().create(messages, tool_choice=tool_choice, **kwargs)

    client = Recording(list(replies), model_info=replay().model_info)
    client.tool_choices = []
    return client


def function_call(name: str, arguments: str) -> Any:
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage

    return CreateResult(finish_reason="function_calls", content=[FunctionCall(id="call-1", arguments=arguments,
                                                                              name=name)],
                        usage=RequestUsage(prompt_tokens=1, completion_tokens=1), cached=False)


@pytest.mark.asyncio
async def test_autogen_team_stops_when_the_critic_approves() -> None:
    from agents import autogen_team

    clients = {"writer": replay("LoRA adds small matrices to a frozen model.", "LoRA trains small added matrices."),
               "critic": replay("Say what is trained.", "APPROVE")}
    steps: list[dict[str, Any]] = []

    result = await autogen_team.arun("Explain LoRA.", clients=clients, on_step=steps.append, max_messages=10)

    assert result["approved"] is True
    assert result["stop_reason"] == "Text 'APPROVE' mentioned"
    assert result["answer"] == "LoRA trains small added matrices."
    assert [(s["name"], s["kind"]) for s in steps] == [("writer", "message"), ("critic", "message")] * 2
    # The critic saw the writer's first draft before its feedback.
    critic_prompt = clients["critic"].create_calls[0]["messages"]
    assert any("LoRA adds small matrices" in str(m.content) for m in critic_prompt)


@pytest.mark.asyncio
async def test_autogen_team_stops_at_the_message_cap_without_approval() -> None:
    from agents import autogen_team

    clients = {"writer": replay("Draft 1.", "Draft 2.", "Draft 3."),
               "critic": replay("Too vague.", "Still vague.", "Vague.")}

    result = await autogen_team.arun("Explain LoRA.", clients=clients, max_messages=4)

    assert result["approved"] is False
    assert result["stop_reason"].startswith("Maximum number of messages 4 reached")
    assert result["answer"] == "Draft 2."
    assert len(clients["writer"].create_calls) == 2 and len(clients["critic"].create_calls) == 1


@pytest.mark.asyncio
async def test_autogen_writer_tool_call_runs_count_words() -> None:
    from agents import autogen_team

    clients = {"writer": replay(function_call("count_words", '{"text": "a b c"}'), "A three-word draft."),
               "critic": replay("APPROVE")}
    steps: list[dict[str, Any]] = []

    result = await autogen_team.arun("Write three words.", clients=clients, on_step=steps.append)

    assert [(s["kind"], s["output"]) for s in steps[:2]] == [("tool_call", 'count_words({"text": "a b c"})'),
                                                            ("tool_result", "count_words -> 3")]
    assert result["answer"] == "A three-word draft." and result["approved"] is True
    assert result["tool_errors"] == 0


@pytest.mark.asyncio
async def test_autogen_counts_failed_and_unparsed_tool_calls() -> None:
    from agents import autogen_team

    clients = {"writer": replay(function_call("count_words", '{"txt": "a b"}'), "Draft.",
                                '<tool_call>{"name": "count_words", "arguments": {}}</tool_call>'),
               "critic": replay("Shorter.", "Still no.")}
    steps: list[dict[str, Any]] = []

    result = await autogen_team.arun("Write.", clients=clients, on_step=steps.append, max_messages=4)

    assert result["tool_errors"] == 2  # arguments the tool cannot take, and a call left as text
    assert next(s for s in steps if s["kind"] == "tool_result")["error"]


@pytest.mark.asyncio
async def test_autogen_selector_picks_speakers_from_structured_output() -> None:
    from agents import autogen_selector

    clients = {
        "selector": replay('{"next": "critic"}'),
        "researcher": recording_replay(function_call("lookup_term", '{"term": "caller tag"}')),
        "writer": replay("A caller tag names the agent that made a call."),
        "critic": replay("APPROVE"),
    }
    steps: list[dict[str, Any]] = []

    result = await autogen_selector.arun("What is a caller tag?", clients=clients, on_step=steps.append)

    assert result["speakers"] == ["researcher", "writer", "critic"]
    assert result["selector_fallbacks"] == 0 and result["approved"] is True
    assert any(s["kind"] == "tool_summary" and "X-Roost-Caller" in s["output"] for s in steps)
    assert clients["researcher"].tool_choices == ["required"]  # AssistantAgent sends "auto"; the wrapper insists
    # Research comes before writing and a draft before criticism, so the first two turns have one candidate
    # and the selector model is not asked; the third offers all but the last speaker.
    enums = [c["extra_create_args"]["response_format"]["json_schema"]["schema"]["properties"]["next"]["enum"]
             for c in clients["selector"].create_calls]
    assert enums == [["researcher", "critic"]]


@pytest.mark.asyncio
async def test_autogen_selector_reads_unstructured_replies_defensively() -> None:
    from agents import autogen_selector

    lookup = function_call("lookup_term", '{"term": "adapter"}')
    clients = {
        "selector": replay("the critic, I think", "???", "???"),
        "researcher": replay(lookup, lookup),
        "writer": replay("An adapter is a LoRA fine-tune.", "An adapter is a LoRA fine-tune in adapters/."),
        "critic": replay("Say where it is stored."),
    }

    result = await autogen_selector.arun("What is an adapter?", clients=clients, max_messages=6)

    # Words name the critic; after it, nothing readable moves on in order (wrapping round to the researcher),
    # and after the researcher, to the writer.
    assert result["speakers"] == ["researcher", "writer", "critic", "researcher", "writer"]
    assert result["selector_fallbacks"] == 3


@pytest.mark.asyncio
async def test_autogen_run_refuses_unknown_options_and_empty_tasks() -> None:
    from agents import autogen_team

    with pytest.raises(RoostError, match="unknown option.*temprature"):
        await autogen_team.arun("x", clients={}, temprature=0.5)
    with pytest.raises(ValueError, match="needs a task"):
        await autogen_team.arun("  ", clients={})


# a real backend: each agent on its own adapter ----------------------------------------------


@pytest.fixture(scope="module")
def adapters_backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.multi_adapter import adapter_backend

    with adapter_backend(tmp_path_factory.mktemp("agent-adapters"), ["writer", "critic", "researcher"]) as backend:
        yield backend


def test_autogen_team_agents_are_served_by_their_own_adapters(adapters_backend: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from agents import autogen_team

    adapters_backend.use(monkeypatch)

    result = autogen_team.run("Explain LoRA.", max_messages=4, max_tokens=8)

    assert result["stop_reason"].startswith("Maximum number of messages 4") or result["approved"]
    for agent in ("writer", "critic"):
        served = adapters_backend.calls(f"agents.autogen_team/{agent}")
        assert served, agent
        assert {(t.model, t.base, t.adapter, t.status) for t in served} == {(agent, "tiny", f"{agent}-lora", 200)}


def test_crew_runs_with_local_memory_and_per_agent_adapters(adapters_backend: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from agents import crew

    adapters_backend.use(monkeypatch)
    steps: list[dict[str, Any]] = []

    result = crew.run("caller tag", on_step=steps.append, max_tokens=64)  # room for a whole tool call

    assert isinstance(result["answer"], str)
    assert [s["name"] for s in steps if s["kind"] == "task_started"] == ["Researcher", "Writer"]
    # The researcher's first call was made to use lookup_term, and the backend made that call parse.
    assert result["tool_calls"] == 1 and result["tool_errors"] == 0
    assert next(s for s in steps if s["kind"] == "tool_call")["output"]["tool"] == "lookup_term"
    for agent, adapter in (("researcher", "researcher-lora"), ("writer", "writer-lora")):
        served = adapters_backend.calls(f"agents.crew/{agent}")
        assert served and {(t.adapter, t.status) for t in served} == {(adapter, 200)}, agent
    # The memory's own analysis went to the backend as schema-constrained JSON requests.
    analysis = adapters_backend.calls("agents.crew/memory")
    assert analysis and all(t.request["response_format"]["type"] == "json_schema" for t in analysis)


def test_crew_memory_stores_and_recalls_on_the_backend_embeddings(adapters_backend: Any, tmp_path: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import lancedb

    from agents.crew import local_memory, require_crewai
    from roost.clients import crewai_llm

    adapters_backend.use(monkeypatch)
    require_crewai()
    memory = local_memory(crewai_llm("default", caller="tests.crew/memory"), path=tmp_path / "memory")
    # Every field given: nothing for the LLM to infer, so this is embeddings and storage alone.
    facts = ["A caller tag names the agent that made a call.", "Paris is the capital of France."]
    for fact in facts:
        memory.remember(fact, scope="/glossary", categories=["test"], importance=0.5)

    matches = memory.recall("Which agent made this call?", depth="shallow", limit=2)

    assert [m.record.content for m in matches][0] == facts[0]
    rows = lancedb.connect(str(tmp_path / "memory")).open_table("memories").to_arrow()
    assert rows.num_rows == 2 and {len(v) for v in rows.column("vector").to_pylist()} == {384}


def test_crew_memory_recalled_before_anything_is_saved_keeps_the_backend_width(
        adapters_backend: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import lancedb
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    from agents.crew import local_memory, require_crewai
    from roost.clients import crewai_llm

    adapters_backend.use(monkeypatch)
    require_crewai()
    # A folder left by another embedder (CrewAI's default width, 3072): kept aside, not deleted.
    stale = LanceDBStorage(path=str(tmp_path / "memory"), vector_dim=3072)
    stale._ensure_table()
    del stale
    memory = local_memory(crewai_llm("default", caller="tests.crew/memory"), path=tmp_path / "memory")
    # The crew's first memory operation is a recall on an empty store (CrewAI then made a 3072-wide table).
    assert memory.recall("anything?", depth="shallow", limit=1) == []
    memory.remember("A caller tag names the agent that made a call.", scope="/glossary", categories=["test"],
                    importance=0.5)
    matches = memory.recall("Which agent made this call?", depth="shallow", limit=1)

    assert [m.record.content for m in matches] == ["A caller tag names the agent that made a call."]
    rows = lancedb.connect(str(tmp_path / "memory")).open_table("memories").to_arrow()
    assert {len(v) for v in rows.column("vector").to_pylist()} == {384}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("memory.3072d-")]
    assert len(aside) == 1 and (aside[0] / "memories.lance").is_dir()


# e2e: the real default model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_backend(default_model_home: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.multi_adapter import default_model_backend

    with default_model_backend(tmp_path_factory.mktemp("agents-e2e"), default_model_home) as backend:
        yield backend


@pytest.mark.e2e
def test_autogen_selector_team_on_the_default_model_has_no_tool_call_parse_errors(
        default_backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents import autogen_selector

    default_backend.use(monkeypatch)

    result = autogen_selector.run("What is a caller tag?", max_messages=6, max_tokens=96)

    assert result["stop_reason"] and result["answer"]
    assert result["speakers"][0] == "researcher" and result["tool_errors"] == 0
    assert result["selector_fallbacks"] == 0  # every speaker choice the model made was the JSON asked for
    made, problems = default_backend.tool_call_problems("agents.autogen_selector/")
    assert made >= 1 and problems == []


@pytest.mark.e2e
def test_crew_on_the_default_model_has_no_tool_call_parse_errors(default_backend: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from agents import crew

    default_backend.use(monkeypatch)

    result = crew.run("caller tag", max_tokens=96)

    assert result["answer"] and result["tool_calls"] >= 1 and result["tool_errors"] == 0
    made, problems = default_backend.tool_call_problems("agents.crew/")
    assert made >= 1 and problems == []
