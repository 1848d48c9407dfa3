"""Each framework's own client, from roost.clients, making real calls to the backend (uvicorn, ephemeral port).

The backend serves a tiny random Llama (tests/conftest.py) with the transformers
engine; each test checks that the trace store recorded the calls under the
caller tag the client was given, with the per-call options it set.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roost import clients
from roost.backend.app import create_app
from roost.backend.traces import Trace, TraceStore
from roost.config import load_settings
from roost.models import pull
from roost.store import Store
from tests.conftest import make_tiny_model
from tests.servers import uvicorn_thread

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):
    """(settings pointing at a running backend that serves base 'tiny', its trace store)."""
    from roost.backend.transformers_engine import TransformersEngine

    root = tmp_path_factory.mktemp("clients")
    home = root / "home"
    server_settings = load_settings(env={"ROOST_HOME": str(home)})
    pull(str(make_tiny_model(root / "tiny-src")), name="tiny", settings=server_settings, progress=False)
    traces = TraceStore(Store(home).traces_db)
    engine = TransformersEngine(server_settings, ["tiny"], dtype="float32", max_batch_size=4)
    app = create_app(engine, server_settings, traces=traces)
    with uvicorn_thread(app) as url:
        yield load_settings(env={"ROOST_HOME": str(home), "ROOST_URL": url}), traces


def recorded(traces: TraceStore, caller: str) -> list[Trace]:
    traces.flush()
    return traces.list(caller=caller)


def test_endpoint_finds_the_running_backend_and_uses_a_placeholder_key(backend):
    settings, _ = backend
    base_url, key = clients.endpoint(settings)
    assert base_url == f"{settings.backend.base_url}/v1" and key == clients.NO_KEY
    keyed = settings.model_copy(update={"backend": settings.backend.model_copy(update={"api_key": "s3cret"})})
    assert clients.endpoint(keyed)[1] == "s3cret"


def test_dspy_lm_calls_are_traced_with_the_caller(backend):
    settings, traces = backend
    lm = clients.dspy_lm("tiny", caller="tests.dspy/reader", temperature=0.0, max_tokens=6, settings=settings)
    outputs = lm("Say hello.")
    assert len(outputs) == 1 and isinstance(outputs[0], str)
    lm("Say hello.")  # cache is off: the second, identical call reaches the backend too
    calls = recorded(traces, "tests.dspy/reader")
    assert len(calls) == 2
    assert calls[0].model == "tiny" and calls[0].status == 200
    assert calls[0].request["params"]["max_tokens"] == 6 and calls[0].request["params"]["temperature"] == 0.0
    assert calls[0].request["messages"] == HELLO


def test_dspy_json_adapter_asks_the_backend_for_the_signature_schema(backend):
    import dspy

    from programs.classify import LABELS, Classify

    settings, traces = backend
    lm = clients.dspy_lm("tiny", caller="tests.dspy/classify", max_tokens=48, temperature=0.0, settings=settings)
    assert lm.supports_response_schema and "response_format" in lm.supported_params
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        prediction = Classify()(text="My parcel is late.")
    assert prediction.label in LABELS  # a random model's reply parses: the backend decoded under the schema
    (call,) = recorded(traces, "tests.dspy/classify")
    response_format = call.request["response_format"]
    assert response_format["type"] == "json_schema"
    schema = response_format["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == list(LABELS)


def test_langchain_chat_calls_are_traced_with_the_caller(backend):
    settings, traces = backend
    chat = clients.langchain_chat("tiny", caller="tests.graph/writer", temperature=0.0, max_tokens=5,
                                  settings=settings)
    reply = chat.invoke("Say hello.")
    assert isinstance(reply.content, str)
    (call,) = recorded(traces, "tests.graph/writer")
    assert call.model == "tiny" and call.request["params"]["max_tokens"] == 5


def test_autogen_client_calls_are_traced_with_the_caller(backend):
    from autogen_core.models import UserMessage

    settings, traces = backend
    client = clients.autogen_client("tiny", caller="tests.team/critic", temperature=0.0, max_tokens=5,
                                    settings=settings)
    assert client.model_info["function_calling"] and client.model_info["family"] == "unknown"

    async def ask() -> str:
        try:
            result = await client.create([UserMessage(content="Say hello.", source="user")])
        finally:
            await client.close()
        return result.content

    assert isinstance(asyncio.run(ask()), str)
    (call,) = recorded(traces, "tests.team/critic")
    assert call.model == "tiny" and call.request["params"]["max_tokens"] == 5


def test_crewai_llm_calls_are_traced_with_the_caller(backend):
    settings, traces = backend
    llm = clients.crewai_llm("tiny", caller="tests.crew/researcher", temperature=0.0, max_tokens=5,
                             settings=settings)
    assert os.environ["CREWAI_DISABLE_TELEMETRY"] == "true"
    assert isinstance(llm.call("Say hello."), str)
    calls = recorded(traces, "tests.crew/researcher")
    assert calls and all(c.model == "tiny" for c in calls)
    assert calls[0].request["params"]["max_tokens"] == 5


def test_a_missing_framework_names_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "crewai" else real(name, *a))
    with pytest.raises(clients.MissingExtra, match=r"install roost\[crewai\]"):
        clients.crewai_llm("default")


def test_importing_roost_clients_imports_no_framework():
    code = ("import sys, roost.clients; "
            "assert not {'dspy', 'litellm', 'crewai', 'autogen_ext', 'langchain_openai'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
