"""The LangGraph graphs: tools, the ReAct loop, the supervisor with its approval step, the translate loop.

Models are LangChain's fake chat models with scripted replies (no backend), so
each test knows which agent says what; the tools, the graphs, the routing rules
and the SQLite checkpointer are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langgraph.types import Command  # noqa: E402

from graphs import react, supervisor, translate  # noqa: E402
from graphs.runtime import as_decision, model_name, pick_choice, sqlite_checkpointer  # noqa: E402
from graphs.tools import (  # noqa: E402
    DOCS_DIR,
    EXPRESSION_PATTERN,
    CalculatorError,
    DocSearch,
    calculate,
    calculator_tool,
)
from roost.config import load_settings  # noqa: E402
from roost.errors import RoostError  # noqa: E402


class ScriptedChat(GenericFakeChatModel):
    """A fake chat model that replies from a script and records what each call was bound with."""

    calls: list[dict[str, Any]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tool_names=[t.name for t in tools], **kwargs)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self.calls.append({"messages": list(messages), **kwargs})
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def scripted(*replies: str | AIMessage) -> ScriptedChat:
    return ScriptedChat(messages=iter([r if isinstance(r, AIMessage) else AIMessage(r) for r in replies]), calls=[])


def tool_call(name: str, call_id: str = "call-1", **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


@pytest.fixture
def search() -> DocSearch:
    # Hash-based vectors: the graphs only need passages back; ranking is tested on real embeddings below.
    return DocSearch(DOCS_DIR, DeterministicFakeEmbedding(size=32))


# the calculator -------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "value"), [
    ("17 * 23", 391), ("2 * (3 + 4) ** 2", 98), ("(120 - 15) / 7", 15), ("7 / 2", 3.5), ("2^10", 1024),
    ("12 x 3", 36), ("sqrt(144) + abs(-2)", 14), ("-5 // 2", -3), ("10 % 4 =", 2),
])
def test_calculator_computes_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(("expression", "reason"), [
    ("__import__('os').system('true')", "not allowed"), ("(1).__class__", "not allowed"),
    ("9 ** 9 ** 9", "exponent"), ("1 / 0", "divides by zero"), ("two + two", "not allowed"),
    ("", "needs an arithmetic expression"), ("'a' * 3", "not allowed"), ("1 +", "not an arithmetic expression"),
])
def test_calculator_refuses_what_is_not_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalculatorError, match=reason):
        calculate(expression)


def test_calculator_tool_returns_errors_to_the_model() -> None:
    tool = calculator_tool()
    assert tool.invoke({"expression": "6 * 7"}) == "42"
    assert tool.invoke({"expression": "1 / 0"}) == "error: '1 / 0' divides by zero"
    # The argument's schema admits only arithmetic characters: the backend decodes calls under it, and a call
    # that breaks it anyway comes back to the model as an error instead of reaching the calculator.
    schema = tool.tool_call_schema.model_json_schema()["properties"]["expression"]
    assert schema["pattern"] == EXPRESSION_PATTERN and schema["minLength"] == 1
    model = scripted(tool_call("calculator", expression="os.getcwd()"), "I cannot.")
    messages = react.build(model, [tool]).invoke({"messages": [("user", "Where am I?")]})["messages"]
    [result] = [m for m in messages if m.type == "tool"]
    assert result.status == "error" and "expression" in result.content


# the ReAct agent ---------------------------------------------------------------------------


def test_react_agent_calls_the_calculator_and_answers_with_its_number() -> None:
    model = scripted(tool_call("calculator", expression="17 * 23"), "17 * 23 is 391.")
    graph = react.build(model, [calculator_tool()])

    messages = graph.invoke({"messages": [("user", "What is 17 times 23?")]})["messages"]

    tool_messages = [m for m in messages if m.type == "tool"]
    assert [m.content for m in tool_messages] == ["391"]
    assert "391" in messages[-1].content
    # First step forced to a tool call, then free to answer.
    assert [c["tool_choice"] for c in model.calls] == ["required", "auto"]
    assert model.calls[1]["messages"][-1].content == "391"


def test_react_agent_switches_tools_off_after_max_rounds() -> None:
    calls = [tool_call("calculator", f"call-{i}", expression=f"{i} + 1") for i in range(3)]
    model = scripted(*calls, tool_call("calculator", "call-x", expression="9 + 9"))
    graph = react.build(model, [calculator_tool()], max_tool_rounds=3)

    messages = graph.invoke({"messages": [("user", "Count up")]})["messages"]

    assert [c["tool_choice"] for c in model.calls] == ["required", "auto", "auto", "none"]
    assert [m.content for m in messages if m.type == "tool"] == ["1", "2", "3"]
    assert messages[-1].type == "ai" and not messages[-1].tool_calls  # the loop ended on an answer


# the supervisor -----------------------------------------------------------------------------


def supervisor_models(*router_replies: str) -> dict[str, ScriptedChat]:
    return {
        "router": scripted(*router_replies),
        "math": scripted(tool_call("calculator", expression="12 * 7")),
        "researcher": scripted(tool_call("search_docs", query="resume a run")),
        "writer": scripted("12 times 7 is 84, and a run resumes by its thread id."),
    }


def test_supervisor_routes_to_several_specialists_in_one_run(search: DocSearch) -> None:
    models = supervisor_models('{"next": "math"}', '{"next": "researcher"}')
    graph = supervisor.build(models, search, approval=False)

    steps = [next(iter(update)) for update in graph.stream({"question": "What is 12 * 7, and how do runs resume?"},
                                                            stream_mode="updates")]

    # After both specialists the only choice left is FINISH: the router is not even asked.
    assert steps == ["router", "math", "router", "researcher", "router", "writer", "finish"]
    assert len(models["router"].calls) == 2
    # Each specialist made one call that had to use its tool; the tools' answers are the writer's facts.
    final = models["writer"].calls[0]["messages"][-1].content
    assert final.startswith("Facts:\n- 12 * 7 = 84\n- [")
    assert final.endswith("\n\nQuestion: What is 12 * 7, and how do runs resume?")
    # The router is told who has not been asked yet.
    assert models["router"].calls[1]["messages"][-1].content.endswith("Not asked yet: researcher.")
    assert [c["tool_choice"] for name in ("math", "researcher") for c in models[name].calls] == ["required"] * 2


def test_supervisor_offers_only_specialists_who_have_not_spoken(search: DocSearch) -> None:
    models = supervisor_models('{"next": "math"}', '{"next": "FINISH"}')
    graph = supervisor.build(models, search, approval=False)

    state = graph.invoke({"question": "What is 12 * 7?"})

    schemas = [c["response_format"]["json_schema"]["schema"] for c in models["router"].calls]
    enums = [schema["properties"]["next"]["enum"] for schema in schemas]
    assert enums == [["math", "researcher"], ["researcher", "FINISH"]]
    assert [who for who, _ in state["notes"]] == ["math", "writer"]
    assert state["answer"] == "12 times 7 is 84, and a run resumes by its thread id." and state["approved"] is True
    assert state["route_fallbacks"] == 0


def test_supervisor_reads_unconstrained_router_replies_defensively(search: DocSearch) -> None:
    # Words instead of JSON, then nothing usable: the run still ends, and both fallbacks are counted.
    models = supervisor_models("Let the researcher look.", "hmm")
    graph = supervisor.build(models, search, approval=False)

    state = graph.invoke({"question": "How do runs resume?"})

    assert [who for who, _ in state["notes"]] == ["researcher", "math", "writer"]
    assert state["route_fallbacks"] == 2


def test_supervisor_run_interrupted_for_approval_resumes_by_thread_id(search: DocSearch, tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.db"
    config = {"configurable": {"thread_id": "run-1"}}
    models = supervisor_models('{"next": "math"}', '{"next": "FINISH"}')
    with sqlite_checkpointer(db) as saver:
        graph = supervisor.build(models, search, checkpointer=saver)
        paused = graph.invoke({"question": "What is 12 * 7?"}, config)
    assert "approved" not in paused
    [pending] = paused["__interrupt__"]
    assert pending.value == {"question": "Publish this answer?",
                             "answer": "12 times 7 is 84, and a run resumes by its thread id."}

    # A new connection, as a later process would open: the run continues from the saved step.
    models_later = {name: scripted() for name in supervisor.AGENTS}
    with sqlite_checkpointer(db) as saver:
        graph = supervisor.build(models_later, search, checkpointer=saver)
        assert graph.get_state(config).next == ("finish",)
        state = graph.invoke(Command(resume="yes"), config)

    assert state["approved"] is True
    assert state["answer"].startswith("12 times 7 is 84")
    assert [who for who, _ in state["notes"]] == ["math", "writer"]
    assert all(not m.calls for m in models_later.values())  # nothing was recomputed


def test_supervisor_run_that_crashed_continues_from_its_last_step(search: DocSearch, tmp_path: Path) -> None:
    from graphs.runtime import first_command

    db, config = tmp_path / "checkpoints.db", {"configurable": {"thread_id": "run-crash"}}
    models = supervisor_models('{"next": "math"}', '{"next": "FINISH"}')
    models["writer"] = scripted()  # no reply left: the writer's call fails, as a dead backend would
    with sqlite_checkpointer(db) as saver:
        graph = supervisor.build(models, search, approval=False, checkpointer=saver)
        with pytest.raises(Exception):  # noqa: B017 - whatever the model raised; the checkpoint is the point
            graph.invoke({"question": "What is 12 * 7?"}, config)

    later = {name: scripted() for name in supervisor.AGENTS}
    later["writer"] = scripted("12 times 7 is 84.")
    with sqlite_checkpointer(db) as saver:
        graph = supervisor.build(later, search, approval=False, checkpointer=saver)
        command = first_command(graph, config, lambda: pytest.fail("a stopped run must not start over"))
        assert command is None and graph.get_state(config).next == ("writer",)
        graph.invoke(command, config)
        state = graph.get_state(config).values

    assert state["answer"] == "12 times 7 is 84." and [who for who, _ in state["notes"]] == ["math", "writer"]
    assert not later["router"].calls and not later["math"].calls  # finished steps were not run again


def test_supervisor_rejected_answer_is_not_approved(search: DocSearch, tmp_path: Path) -> None:
    config = {"configurable": {"thread_id": "run-2"}}
    with sqlite_checkpointer(tmp_path / "c.db") as saver:
        graph = supervisor.build(supervisor_models('{"next": "math"}', '{"next": "FINISH"}'), search,
                                 checkpointer=saver)
        graph.invoke({"question": "Say hi"}, config)
        state = graph.invoke(Command(resume=False), config)
    assert state["approved"] is False


def test_supervisor_needs_a_checkpointer_for_approval(search: DocSearch) -> None:
    with pytest.raises(ValueError, match="checkpointer"):
        supervisor.build(supervisor_models(), search)


# the translate loop ---------------------------------------------------------------------------


def test_translate_loop_stops_when_the_reviewer_approves() -> None:
    models = {
        "translator": scripted("Bonjour le monde", "Bonjour, le monde !"),
        "reviewer": scripted('{"approved": false, "feedback": "Add the punctuation."}',
                             '{"approved": true, "feedback": ""}'),
    }
    state = translate.build(models, max_rounds=5).invoke({"text": "Hello, world!", "language": "French"})

    assert state["stopped_by"] == "approved" and state["approved"] is True
    assert state["rounds"] == 2
    assert state["translation"] == "Bonjour, le monde !"
    revise_prompt = models["translator"].calls[1]["messages"][-1].content
    assert "Add the punctuation." in revise_prompt and "Bonjour le monde" in revise_prompt


def test_translate_loop_stops_after_max_rounds() -> None:
    no = '{"approved": false, "feedback": "Still wrong."}'
    models = {"translator": scripted("v1", "v2", "v3"), "reviewer": scripted(no, no, no)}

    state = translate.build(models, max_rounds=2).invoke({"text": "Hello", "language": "German"})

    assert state["stopped_by"] == "max_rounds" and state["approved"] is False
    assert state["rounds"] == 2
    assert len(models["translator"].calls) == 2 and len(models["reviewer"].calls) == 2
    assert models["reviewer"].calls[0]["response_format"]["json_schema"]["name"] == "review"


def test_translate_review_read_from_words_when_not_json() -> None:
    assert translate.read_review("APPROVE. Looks good.") == (True, "APPROVE. Looks good.")
    assert translate.read_review("Not approved: wrong tense")[0] is False
    assert translate.read_review('Sure! {"approved": true, "feedback": "ok"}') == (True, "ok")


# runtime helpers ---------------------------------------------------------------------------------


def test_each_agent_uses_its_own_alias_when_roost_toml_defines_one(roost_home: Path) -> None:
    Path("roost.toml").write_text('[aliases.math]\nbase = "smollm2-135m-instruct"\nadapter = "math-lora"\n')
    settings = load_settings()
    assert model_name("math", None, settings) == "math"
    assert model_name("writer", None, settings) == "default"
    assert model_name("writer", {"writer": "writer-v2"}, settings) == "writer-v2"


def test_pick_choice_and_decisions() -> None:
    assert pick_choice('{"next": "math"}', "next", ["math", "FINISH"]) == ("math", True)
    assert pick_choice('{"next": "poet"}', "next", ["math", "FINISH"]) == (None, False)
    assert pick_choice("I would say FINISH now", "next", ["math", "FINISH"]) == ("FINISH", False)
    assert [as_decision(v) for v in (True, "y", "Approve", {"approved": False}, "no")] == [True, True, True,
                                                                                          False, False]
    with pytest.raises(RoostError, match="approval"):
        as_decision("maybe")


# document search on the backend's real embeddings ----------------------------------------------


def test_document_search_ranks_by_meaning_with_backend_embeddings(tokenizer: Any, monkeypatch: Any) -> None:
    from graphs.tools import backend_embeddings
    from roost.backend.app import create_app
    from tests.fakes import EchoEngine
    from tests.servers import uvicorn_thread

    settings = load_settings()
    with uvicorn_thread(create_app(EchoEngine(tokenizer), settings)) as url:
        monkeypatch.setenv("ROOST_URL", url)
        search = DocSearch(DOCS_DIR, backend_embeddings(load_settings()))
        hits = search.top_k("How can I continue an interrupted run later?", k=2)
        embedding_hits = search.top_k("Which model computes the embedding vectors?", k=1)

    assert hits[0][1].source == "checkpoints.md"
    assert hits[0][0] > hits[1][0] > 0
    assert embedding_hits[0][1].heading == "Embeddings"


# roost run: the approval step from the command line -------------------------------------------


@pytest.fixture
def offline_supervisor(monkeypatch: pytest.MonkeyPatch, search: DocSearch) -> dict[str, ScriptedChat]:
    """graphs.supervisor with scripted models and hash embeddings in place of the backend's."""
    models = supervisor_models('{"next": "math"}', '{"next": "FINISH"}')
    monkeypatch.setattr(supervisor, "chat_models", lambda *args, **kwargs: models)
    monkeypatch.setattr(supervisor, "backend_embeddings", lambda settings: search.embeddings)
    return models


def test_roost_run_without_a_terminal_stops_at_approval_then_resumes_by_thread_id(
        offline_supervisor: dict[str, ScriptedChat], roost_home: Path) -> None:
    from typer.testing import CliRunner

    from roost.cli import app

    runner = CliRunner()
    paused = runner.invoke(app, ["run", "graphs.supervisor", "-i", "What is 12 * 7?", "--thread-id", "t-cli"])
    assert paused.exit_code == 1
    assert "paused at 'Publish this answer?' (thread t-cli)" in paused.output
    assert "--thread-id t-cli and --approve or --reject" in paused.output
    assert (roost_home / "checkpoints.db").is_file()

    resumed = runner.invoke(app, ["run", "graphs.supervisor", "--thread-id", "t-cli", "--approve", "--json"])
    assert resumed.exit_code == 0, resumed.output
    result = json.loads(resumed.stdout.strip().splitlines()[-1])["result"]
    assert result["status"] == "done" and result["approved"] is True
    assert result["specialists"] == ["math", "writer"]

    again = runner.invoke(app, ["run", "graphs.supervisor", "--thread-id", "t-cli", "--approve"])
    assert again.exit_code == 1 and "has already finished" in again.output


def test_roost_run_asks_in_a_terminal(offline_supervisor: dict[str, ScriptedChat],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from roost.cli import app

    # CliRunner swaps in its own stdin: make that one claim to be a terminal.
    monkeypatch.setattr("typer.testing._NamedTextIOWrapper.isatty", lambda self: True, raising=False)
    result = CliRunner().invoke(app, ["run", "graphs.supervisor", "-i", "What is 12 * 7?", "--json"], input="n\n")

    assert result.exit_code == 0, result.output
    assert "Publish this answer? [y/N]" in result.output
    final = json.loads(result.stdout.strip().splitlines()[-1])["result"]
    assert final["approved"] is False and final["answer"].startswith("12 times 7 is 84")


def test_roost_run_approve_flag_answers_without_pausing(offline_supervisor: dict[str, ScriptedChat]) -> None:
    from roost.targets import run

    steps: list[dict[str, Any]] = []
    result = run("graphs.supervisor", "What is 12 * 7?", on_step=steps.append, approve=True)

    assert result["status"] == "done" and result["approved"] is True
    names = [s["name"] for s in steps]
    assert names[:4] == ["router", "math/agent", "math/tools", "math"]
    assert {"kind": "interrupt"}.items() <= next(s for s in steps if s["kind"] == "interrupt").items()
    assert next(s for s in steps if s["name"] == "math/tools")["output"] == "calculator -> 84"


# a real backend: each agent on its own adapter ----------------------------------------------


@pytest.fixture(scope="module")
def adapters_backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.multi_adapter import adapter_backend

    with adapter_backend(tmp_path_factory.mktemp("graph-adapters"), ["translator", "reviewer", "math"]) as backend:
        yield backend


def test_translate_agents_are_served_by_their_own_adapters(adapters_backend: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    adapters_backend.use(monkeypatch)

    result = translate.run("Good morning.", language="French", max_rounds=2, max_tokens=8, thread_id="adapters-1")

    assert result["stopped_by"] in ("approved", "max_rounds") and 1 <= result["rounds"] <= 2
    translator = adapters_backend.calls("graphs.translate/translator")
    reviewer = adapters_backend.calls("graphs.translate/reviewer")
    assert translator and reviewer
    assert {(t.model, t.base, t.adapter, t.status) for t in translator} == {("translator", "tiny", "translator-lora",
                                                                            200)}
    assert {(t.model, t.base, t.adapter, t.status) for t in reviewer} == {("reviewer", "tiny", "reviewer-lora", 200)}
    assert all(t.request["response_format"]["json_schema"]["name"] == "review" for t in reviewer)
    assert (adapters_backend.home / "checkpoints.db").is_file()


def test_supervisor_agents_without_an_alias_share_the_base(adapters_backend: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    adapters_backend.use(monkeypatch)

    result = supervisor.run("What is 2 + 3?", approval=False, max_tokens=8, thread_id="adapters-2")

    assert result["status"] == "done" and result["specialists"]
    router = adapters_backend.calls("graphs.supervisor/router")
    assert router and {(t.model, t.adapter) for t in router} == {("default", None)}
    # Whoever of the specialists spoke was served as roost.toml says: math on its adapter, the others on the base.
    for agent in result["specialists"]:
        served = {(t.model, t.adapter) for t in adapters_backend.calls(f"graphs.supervisor/{agent}")}
        assert served == ({("math", "math-lora")} if agent == "math" else {("default", None)}), agent


# e2e: the real default model -----------------------------------------------------------------------


@pytest.mark.e2e
def test_react_agent_on_the_default_model_computes_with_the_calculator(default_model_home: Path,
                                                                       tmp_path_factory: pytest.TempPathFactory,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.multi_adapter import default_model_backend

    with default_model_backend(tmp_path_factory.mktemp("react-e2e"), default_model_home) as backend:
        backend.use(monkeypatch)
        steps: list[dict[str, Any]] = []
        result = react.run("What is 17 * 23?", on_step=steps.append, max_tokens=64, temperature=0.0)

    # The first step must call a tool; decoded under the calculator's schema, the call parses, and the
    # expression pattern leads the 135M model to the arithmetic in the question.
    assert result["tool_calls"][0].startswith("calculator(expression='17")
    tool_results = [s["output"] for s in steps if s["name"] == "tools"]
    assert tool_results[0] == "calculator -> 391"
    assert "<tool_call>" not in result["answer"]
