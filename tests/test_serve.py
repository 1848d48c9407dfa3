"""The backend on the real transformers engine: a tiny model in-process and over a socket,
a hot-loaded PEFT adapter, `roost serve` as a background process, and the default model (e2e)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from roost.backend.app import create_app
from roost.backend.embeddings import Embedder
from roost.backend.server import LOG_FILE, STATE_FILE, ServerState, _alive, ensure_running
from roost.backend.traces import TraceStore
from roost.cli import app as cli
from roost.config import load_settings
from roost.models import pull
from roost.store import Store
from tests.servers import in_process, uvicorn_thread

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def tiny_settings(tiny_model_dir: Path, roost_home: Path):
    """A store holding the tiny model as 'tiny', which the 'default' alias points at."""
    (Path.cwd() / "roost.toml").write_text('[aliases.default]\nbase = "tiny"\n')
    settings = load_settings()
    pull(str(tiny_model_dir), name="tiny", settings=settings, progress=False)
    return settings


def tiny_engine(settings, **options):
    from roost.backend.transformers_engine import TransformersEngine

    return TransformersEngine(settings, dtype="float32", **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the tiny model, in-process --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_openai_client_on_the_transformers_engine(tiny_settings, embedder):
    app = create_app(tiny_engine(tiny_settings), tiny_settings, embedder=embedder)
    async with in_process(app) as (client, _):
        ids = [m.id for m in (await client.models.list()).data]
        greedy = await client.chat.completions.create(model="default", messages=QUESTION, max_tokens=12,
                                                      temperature=0, extra_body={"ignore_eos": True})
        stream = await client.chat.completions.create(model="default", messages=QUESTION, max_tokens=12,
                                                      temperature=0, stream=True, extra_body={"ignore_eos": True},
                                                      stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        by_store_name = await client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=12,
                                                             temperature=0, extra_body={"ignore_eos": True})
        text = await client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0,
                                               extra_body={"ignore_eos": True})
        with pytest.raises(openai.BadRequestError) as overflow:
            await client.completions.create(model="tiny", prompt="word " * 1100)
    assert ids == ["default", "tiny", "all-minilm-l6-v2"]
    assert greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 12
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == greedy.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 12
    assert by_store_name.choices[0].message.content == greedy.choices[0].message.content
    assert text.usage.completion_tokens == 5 and text.choices[0].text
    assert overflow.value.body["code"] == "context_length_exceeded"
    assert "maximum context length is 1024 tokens" in overflow.value.body["message"]


@pytest.mark.asyncio
async def test_hot_loaded_adapter_answers_like_in_process_peft_and_unloads(tiny_settings, tiny_model_dir, tmp_path,
                                                                         embedder):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config).eval()
    adapter_dir = tmp_path / "trained-elsewhere"
    peft_model.save_pretrained(adapter_dir)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer("The robot learned to paint", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = peft_model.generate(prompt, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    expected_text = tokenizer.decode(expected[0, prompt.shape[1]:], skip_special_tokens=True)

    app = create_app(tiny_engine(tiny_settings), tiny_settings, embedder=embedder)
    async with in_process(app) as (client, http):
        loaded = await http.post("/v1/load_lora_adapter", json={"lora_name": "painter", "lora_path": str(adapter_dir),
                                                                "base_model_name": "tiny"})
        cards = {m.id: m for m in (await client.models.list()).data}
        tuned = await client.completions.create(model="painter", prompt=prompt[0].tolist(), max_tokens=10,
                                                temperature=0, extra_body={"ignore_eos": True})
        plain = await client.completions.create(model="tiny", prompt=prompt[0].tolist(), max_tokens=10,
                                                temperature=0, extra_body={"ignore_eos": True})
        unloaded = await http.post("/v1/unload_lora_adapter", json={"lora_name": "painter"})
        with pytest.raises(openai.NotFoundError, match="The model `painter` does not exist."):
            await client.completions.create(model="painter", prompt="hi", max_tokens=2)
    assert loaded.status_code == 200, loaded.text
    assert cards["painter"].parent == "tiny"
    assert tuned.choices[0].text == expected_text
    assert plain.choices[0].text != expected_text  # the adapter changes the answer
    assert unloaded.status_code == 200


def test_a_disconnecting_stream_frees_its_engine_slot(tiny_settings, embedder):
    traces = TraceStore(Store(tiny_settings.home).traces_db)
    app = create_app(tiny_engine(tiny_settings), tiny_settings, embedder=embedder, traces=traces)
    body = {"model": "default", "messages": QUESTION, "max_tokens": 900, "stream": True, "ignore_eos": True}
    with uvicorn_thread(app) as url, httpx.Client(base_url=url) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            first = [next(lines) for _ in range(4)]
        deadline = time.monotonic() + 20
        while http.get("/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = http.get("/metrics").text
    assert first[0].startswith("data: ")
    assert "roost_requests_running 0" in metrics and "roost_requests_waiting 0" in metrics
    [trace] = traces.list()
    assert trace.status == 499 and trace.completion_tokens < 900


# `roost serve` as a process ---------------------------------------------------------------------


def test_ensure_running_starts_one_background_server_that_serve_stop_ends(tiny_settings, roost_home):
    port = free_port()
    (Path.cwd() / "roost.toml").write_text(f'[aliases.default]\nbase = "tiny"\n\n[backend]\nport = {port}\n')
    settings = load_settings()
    urls: list[str] = []
    threads = [threading.Thread(target=lambda: urls.append(ensure_running(settings))) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert urls == [f"http://127.0.0.1:{port}"] * 2
        state = ServerState.read(roost_home)
        assert state is not None and state.port == port and _alive(state.pid)
        assert ensure_running(settings) == urls[0]
        log = (roost_home / LOG_FILE).read_text()
        assert log.count("starting:") == 1  # two clients at once, one server

        client = openai.OpenAI(base_url=f"{urls[0]}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=4,
                                               extra_headers={"X-Roost-Caller": "first-process"})
        assert reply.usage.completion_tokens >= 1
    finally:
        stopped = CliRunner().invoke(cli, ["serve", "--stop"])
    assert stopped.exit_code == 0, stopped.output
    assert f"stopped the backend at http://127.0.0.1:{port} (pid {state.pid})" in stopped.output
    assert not _alive(state.pid)
    assert not (roost_home / STATE_FILE).exists()
    assert [t.caller for t in TraceStore(Store(roost_home).traces_db).list()] == ["first-process"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{urls[0]}/health")


def test_serve_without_the_default_model_says_to_pull_it(roost_home):
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "the default model's base 'smollm2-135m-instruct' is not in the store" in result.output
    assert "run `roost pull`" in result.output


def test_serve_stop_without_a_server_is_a_clear_error(roost_home):
    result = CliRunner().invoke(cli, ["serve", "--stop"])
    assert result.exit_code == 1
    assert f"no backend is running for the store at {roost_home}" in result.output
    roost_home.mkdir(parents=True, exist_ok=True)
    (roost_home / STATE_FILE).write_text(json.dumps({"pid": 2**22 + 17, "host": "127.0.0.1", "port": 1,
                                                     "url": "http://127.0.0.1:1", "started": 0}))
    stale = CliRunner().invoke(cli, ["serve", "--stop"])
    assert stale.exit_code == 1 and "is gone" in stale.output
    assert not (roost_home / STATE_FILE).exists()


# the default model (e2e) -----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_openai_client_on_the_default_model(default_model_home, tmp_path, embedder, monkeypatch):
    from roost.backend.transformers_engine import TransformersEngine

    monkeypatch.setenv("ROOST_HOME", str(default_model_home))
    monkeypatch.setenv("ROOST_API_KEY", "e2e-key")
    settings = load_settings()
    engine = TransformersEngine(settings, max_batch_size=2, max_queue=0)
    app = create_app(engine, settings, embedder=embedder, traces=TraceStore(tmp_path / "traces.db"))
    async with in_process(app, api_key="e2e-key") as (client, http):
        ids = [m.id for m in (await client.models.list()).data]
        answer = await client.chat.completions.create(model="default", messages=QUESTION, max_tokens=20,
                                                      temperature=0)
        stream = await client.chat.completions.create(model="default", messages=QUESTION, max_tokens=20,
                                                      temperature=0, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        text = await client.completions.create(model="default", prompt="The capital of France is", max_tokens=5,
                                               temperature=0)
        vectors = await client.embeddings.create(model="all-minilm-l6-v2", input=["Paris", "France's capital"])

        errors = {}
        for name, call in {
            "invalid": client.chat.completions.create(model="default", messages=QUESTION, temperature=-1),
            "context": client.completions.create(model="default", prompt="word " * 9000),
            "unknown": client.chat.completions.create(model="gpt-9", messages=QUESTION),
            "auth": client.with_options(api_key="wrong").chat.completions.create(model="default", messages=QUESTION),
            "too large": client.chat.completions.create(model="default",
                                                        messages=[{"role": "user", "content": "x" * (9 << 20)}]),
        }.items():
            with pytest.raises(openai.APIStatusError) as caught:
                await call
            errors[name] = (caught.value.status_code, caught.value.body)

        busy = [asyncio.create_task(client.chat.completions.create(
            model="default", messages=QUESTION, max_tokens=400, extra_body={"ignore_eos": True})) for _ in range(2)]
        while engine.stats().running < 2:
            await asyncio.sleep(0.05)
        with pytest.raises(openai.InternalServerError) as overloaded:
            await client.chat.completions.create(model="default", messages=QUESTION, max_tokens=5)
        health = await http.get("/health")
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)

    assert "default" in ids and "smollm2-135m-instruct" in ids and "all-minilm-l6-v2" in ids
    assert "Paris" in answer.choices[0].message.content
    assert streamed == answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 10 and answer.usage.completion_tokens <= 20
    assert text.choices[0].text.strip() and text.usage.completion_tokens <= 5
    assert len(vectors.data[0].embedding) == 384
    assert errors["invalid"][0] == 400 and errors["invalid"][1]["param"] == "temperature"
    assert errors["context"][0] == 400 and errors["context"][1]["code"] == "context_length_exceeded"
    assert errors["unknown"] == (404, {"message": "The model `gpt-9` does not exist.", "type": "invalid_request_error",
                                       "param": "model", "code": "model_not_found"})
    assert errors["auth"][0] == 401 and errors["auth"][1]["code"] == "invalid_api_key"
    assert errors["too large"][0] == 413
    assert overloaded.value.status_code == 503 and overloaded.value.response.headers["retry-after"]
    assert health.status_code == 200
