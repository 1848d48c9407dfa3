"""The HTTP app against the real openai client, on the deterministic echo engine (tests/fakes.py).

Most tests run the app in-process (ASGI transport); those that need a real socket
(a client that disconnects) run uvicorn in a thread on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from roost.backend.app import DEFAULT_MAX_TOKENS, create_app
from roost.backend.embeddings import Embedder
from roost.backend.traces import TraceStore
from roost.config import load_settings
from roost.prompts import encode, render_chat
from roost.store import Store
from tests.fakes import EchoEngine
from tests.servers import in_process, uvicorn_thread

pytestmark = pytest.mark.asyncio

HELLO = [{"role": "user", "content": "Hello there, echo engine!"}]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def settings(roost_home: Path):
    return load_settings()


def echo_text(tokenizer, messages, n_tokens: int) -> str:
    """What the echo engine answers to ``messages`` in ``n_tokens`` tokens."""
    ids = encode(tokenizer, render_chat(tokenizer, messages))
    return tokenizer.decode([ids[i % len(ids)] for i in range(n_tokens)], skip_special_tokens=True)


def traces_of(settings) -> TraceStore:
    store = TraceStore(Store(settings.home).traces_db)
    return store


def make_adapter_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    return path


async def poll(condition, timeout: float = 10.0) -> bool:
    """Wait until ``condition()`` holds (or ``timeout``); returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return condition()


# models, chat, streaming, completions ---------------------------------------------------------------


async def test_lifespan_starts_and_stops_the_engine(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    app = create_app(engine, settings, embedder=embedder)
    async with in_process(app) as (_, http):
        assert engine.started and not engine.stopped
        assert (await http.get("/health")).json() == {"status": "ok", "running": 0, "waiting": 0}
    assert engine.stopped


async def test_models_lists_bases_adapters_and_the_embeddings_model(tokenizer, settings, embedder, tmp_path):
    engine = EchoEngine(tokenizer, models=("echo", "writer"))
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, http):
        models = (await client.models.list()).data
        assert [m.id for m in models] == ["echo", "writer", "all-minilm-l6-v2"]
        assert {m.owned_by for m in models} == {"roost"}

        adapter = make_adapter_folder(tmp_path / "lora")
        response = await http.post("/v1/load_lora_adapter", json={"lora_name": "tuned", "lora_path": str(adapter)})
        assert response.status_code == 200, response.text
        cards = {m.id: m for m in (await client.models.list()).data}
        assert cards["tuned"].parent == "echo"
        assert cards["echo"].parent is None
        assert (await client.models.retrieve("tuned")).id == "tuned"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("missing")


async def test_chat_answers_with_usage_and_n_choices(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        reply = await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=6, n=2)
    expected = echo_text(tokenizer, HELLO, 6)
    assert [c.message.content for c in reply.choices] == [expected, expected]
    assert [c.finish_reason for c in reply.choices] == ["length", "length"]
    assert [c.index for c in reply.choices] == [0, 1]
    prompt_len = len(engine.requests[0].prompt_ids)
    assert reply.usage.prompt_tokens == prompt_len
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == prompt_len + 12
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")


async def test_chat_streaming_gives_the_same_text_and_usage_last(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        stream = await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=9, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == echo_text(tokenizer, HELLO, 9)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])


async def test_streaming_n_choices_interleave_by_index(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        stream = await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=5, n=3, stream=True)
        texts = ["", "", ""]
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
    assert texts == [echo_text(tokenizer, HELLO, 5)] * 3


async def test_stop_strings_end_the_answer(tokenizer, settings, embedder):
    messages = [{"role": "user", "content": "alpha beta gamma"}]
    full = echo_text(tokenizer, messages, 60)
    assert "helpful" in full  # the default system prompt of the template is echoed first
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, _):
        one = await client.chat.completions.create(model="echo", messages=messages, max_tokens=60, stop="helpful")
        many = await client.chat.completions.create(model="echo", messages=messages, max_tokens=60,
                                                    stop=["zzz", "helpful"])
    assert one.choices[0].message.content == full[:full.index("helpful")]
    assert one.choices[0].finish_reason == "stop"
    assert many.choices[0].message.content == one.choices[0].message.content


async def test_sampling_parameters_reach_the_engine(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        await client.chat.completions.create(
            model="echo", messages=HELLO, max_completion_tokens=7, temperature=0.4, top_p=0.9, seed=11, n=3,
            extra_body={"min_tokens": 5, "ignore_eos": True},
        )
    params = [r.params for r in engine.requests]
    assert [p.seed for p in params] == [11, 12, 13]  # distinct per choice, else n seeded choices are equal
    assert {(p.max_tokens, p.temperature, p.top_p, p.min_tokens, p.ignore_eos) for p in params} == {
        (7, 0.4, 0.9, 5, True)
    }


async def test_alias_defaults_apply_when_the_request_omits_them(tokenizer, roost_home, embedder):
    (Path.cwd() / "roost.toml").write_text(
        '[aliases.writer]\nbase = "echo"\ntemperature = 0.3\ntop_p = 0.5\nmax_tokens = 7\n'
    )
    settings = load_settings()
    engine = EchoEngine(tokenizer, models=("echo", "writer"))
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        await client.chat.completions.create(model="writer", messages=HELLO)
        await client.chat.completions.create(model="writer", messages=HELLO, temperature=0.9, max_tokens=3)
        await client.chat.completions.create(model="echo", messages=HELLO)
    aliased, overridden, plain = (r.params for r in engine.requests)
    assert (aliased.temperature, aliased.top_p, aliased.max_tokens) == (0.3, 0.5, 7)
    assert (overridden.temperature, overridden.top_p, overridden.max_tokens) == (0.9, 0.5, 3)
    assert (plain.temperature, plain.top_p, plain.max_tokens) == (1.0, 1.0, DEFAULT_MAX_TOKENS)


async def test_default_max_tokens_is_the_rest_of_the_context(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer, max_context=100)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        reply = await client.chat.completions.create(model="echo", messages=HELLO)
    prompt_len = len(engine.requests[0].prompt_ids)
    assert engine.requests[0].params.max_tokens == 100 - prompt_len
    assert reply.usage.completion_tokens == 100 - prompt_len


async def test_completions_take_one_prompt_or_a_batch_and_stream(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, _):
        one = await client.completions.create(model="echo", prompt="one two three", max_tokens=3)
        batch = await client.completions.create(model="echo", prompt=["red green", "blue"], max_tokens=2, n=2)
        ids = tokenizer("sky high")["input_ids"]
        by_ids = await client.completions.create(model="echo", prompt=ids, max_tokens=len(ids))
        stream = await client.completions.create(model="echo", prompt="one two three", max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True})
        events = [e async for e in stream]
    assert one.choices[0].text == "one two three" and one.choices[0].finish_reason == "length"
    assert one.object == "text_completion"
    assert [c.text for c in batch.choices] == ["red green", "red green", "blueblue", "blueblue"]
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.usage.prompt_tokens == len(tokenizer("red green")["input_ids"]) + len(tokenizer("blue")["input_ids"])
    assert by_ids.choices[0].text == "sky high"
    assert "".join(e.choices[0].text for e in events if e.choices) == "one two three"
    assert events[-1].usage.completion_tokens == 3


# embeddings ------------------------------------------------------------------------------------


async def test_embeddings_match_sentence_transformers(tokenizer, settings, embedder):
    from sentence_transformers import SentenceTransformer

    texts = ["A cat sits on the mat.", "Stock markets fell sharply today.", "A kitten rests on a rug."]
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, http):
        floats = await client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
        b64 = await client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the client asks for base64
        single = (await http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts[0]})).json()
        raw = (await http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts,
                                                       "encoding_format": "base64"})).json()

    ours = np.array([d.embedding for d in floats.data])
    reference = SentenceTransformer(str(embedder.path), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.allclose(ours, reference, atol=1e-4)
    assert np.allclose(np.array([d.embedding for d in b64.data]), ours, atol=1e-6)
    decoded = np.frombuffer(base64.b64decode(raw["data"][1]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, ours[1], atol=1e-6)
    assert np.allclose(single["data"][0]["embedding"], ours[0], atol=1e-5)
    # related sentences are closer than unrelated ones
    assert ours[0] @ ours[2] > ours[0] @ ours[1] + 0.3
    assert floats.usage.prompt_tokens > 10 and floats.usage.total_tokens == floats.usage.prompt_tokens


async def test_embeddings_refuse_what_they_cannot_do(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, http):
        with pytest.raises(openai.NotFoundError, match="The model `text-embedding-3-small` does not exist."):
            await client.embeddings.create(model="text-embedding-3-small", input="hi")
        with pytest.raises(openai.BadRequestError, match="384 dimensions"):
            await client.embeddings.create(model="all-minilm-l6-v2", input="hi", dimensions=256)
        tokens = await http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": [[1, 2, 3]]})
        empty = await http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": []})
    assert tokens.status_code == 400 and "strings, not token ids" in tokens.json()["error"]["message"]
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"


# errors ------------------------------------------------------------------------------------------


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_invalid_json_schema_and_values_are_400(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, http):
        broken = await http.post("/v1/chat/completions", content=b'{"model": "echo", "messages": [',
                                 headers={"content-type": "application/json"})
        not_object = await http.post("/v1/chat/completions", json=[1, 2])
        cases = {
            "messages": dict(messages=[]),
            "temperature": dict(messages=HELLO, temperature=-0.5),
            "n": dict(messages=HELLO, n=0),
            "max_tokens": dict(messages=HELLO, max_tokens=0),
            "top_p": dict(messages=HELLO, top_p=1.5),
            "stop": dict(messages=HELLO, stop=5),
            "presence_penalty": dict(messages=HELLO, presence_penalty=0.5),
        }
        errors = {}
        for param, kwargs in cases.items():
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="echo", **kwargs)
            assert caught.value.status_code == 400
            errors[param] = error_of(caught.value)
        with pytest.raises(openai.BadRequestError) as bad_role:
            await client.chat.completions.create(model="echo", messages=[{"role": "wizard", "content": "hi"}])
        missing = await http.post("/v1/chat/completions", json={"model": "echo"})
    assert broken.status_code == 400
    assert "could not parse the JSON body" in broken.json()["error"]["message"]
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]["message"]
    for param, error in errors.items():
        assert error["param"] == param, error
        assert error["type"] == "invalid_request_error"
    assert "greater than or equal to 0" in errors["temperature"]["message"]
    assert "presence_penalty is not supported" in errors["presence_penalty"]["message"]
    assert error_of(bad_role.value)["param"] == "messages"
    assert "messages[0].role must be one of" in error_of(bad_role.value)["message"]
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "Missing required parameter: 'messages'."


async def test_context_overflow_is_400_with_the_words_litellm_looks_for(tokenizer, settings, embedder):
    long = [{"role": "user", "content": "word " * 200}]
    async with in_process(create_app(EchoEngine(tokenizer, max_context=128), settings, embedder=embedder)) as (
        client, _
    ):
        with pytest.raises(openai.BadRequestError) as prompt_too_long:
            await client.chat.completions.create(model="echo", messages=long)
        with pytest.raises(openai.BadRequestError) as asks_too_much:
            await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=500)
        with pytest.raises(openai.BadRequestError) as text_too_long:
            await client.completions.create(model="echo", prompt="word " * 200)
    for caught in (prompt_too_long, asks_too_much, text_too_long):
        error = error_of(caught.value)
        assert "maximum context length is 128 tokens" in error["message"]
        assert error["code"] == "context_length_exceeded"
    assert "500 in the completion" in error_of(asks_too_much.value)["message"]


async def test_api_key_guards_v1_but_not_health(tokenizer, roost_home, embedder, monkeypatch):
    monkeypatch.setenv("ROOST_API_KEY", "s3cret")
    settings = load_settings()
    app = create_app(EchoEngine(tokenizer), settings, embedder=embedder)
    async with in_process(app, api_key="wrong") as (wrong, http):
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.models.list()
        missing = await http.get("/v1/models")
        health = await http.get("/health")
        right = wrong.with_options(api_key="s3cret")
        reply = await right.chat.completions.create(model="echo", messages=HELLO, max_tokens=2)
    assert caught.value.status_code == 401
    assert error_of(caught.value)["message"] == "Incorrect API key provided."
    assert error_of(caught.value)["code"] == "invalid_api_key"
    assert missing.status_code == 401 and "Missing API key" in missing.json()["error"]["message"]
    assert health.status_code == 200
    assert reply.choices[0].finish_reason == "length"


async def test_unknown_model_is_404_everywhere(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, http):
        with pytest.raises(openai.NotFoundError) as chat:
            await client.chat.completions.create(model="gpt-9", messages=HELLO)
        with pytest.raises(openai.NotFoundError) as text:
            await client.completions.create(model="gpt-9", prompt="hi")
        with pytest.raises(openai.NotFoundError) as streamed:
            await client.chat.completions.create(model="gpt-9", messages=HELLO, stream=True)
        route = await http.get("/v1/nothing-here")
    for caught in (chat, text, streamed):
        assert caught.value.status_code == 404
        assert error_of(caught.value) == {"message": "The model `gpt-9` does not exist.",
                                          "type": "invalid_request_error", "param": "model",
                                          "code": "model_not_found"}
    assert route.status_code == 404 and "error" in route.json()


async def test_oversized_body_is_413_before_parsing(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer)
    app = create_app(engine, settings, embedder=embedder, max_body_bytes=64 * 1024)
    big = [{"role": "user", "content": "x" * 100_000}]
    async with in_process(app) as (client, http):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="echo", messages=big)

        async def chunked():  # no Content-Length: the limit is counted as the body arrives
            for _ in range(20):
                yield b" " * 8192
        streamed = await http.post("/v1/chat/completions", content=chunked(),
                                   headers={"content-type": "application/json"})
    assert caught.value.status_code == 413
    assert error_of(caught.value)["code"] == "request_too_large"
    assert "the limit is 65536 bytes" in error_of(caught.value)["message"]
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"
    assert engine.requests == []


async def test_full_queue_is_503_with_retry_after_while_health_answers(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer, max_running=1, max_queue=1, token_delay=0.02)
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, http):
        running = asyncio.create_task(client.chat.completions.create(model="echo", messages=HELLO, max_tokens=2000))
        waiting = asyncio.create_task(client.chat.completions.create(model="echo", messages=HELLO, max_tokens=2000))
        assert await poll(lambda: engine.running == 1 and engine.waiting == 1)
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=5)
        with pytest.raises(openai.InternalServerError) as caught_stream:
            await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=5, stream=True)
        health = await http.get("/health")
        running.cancel()
        waiting.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
        assert await poll(lambda: engine.running == 0 and engine.waiting == 0)
        metrics = (await http.get("/metrics")).text
    for exc in (caught.value, caught_stream.value):
        assert exc.status_code == 503
        assert exc.response.headers["retry-after"] == "2"
        assert error_of(exc)["type"] == "server_error"
    assert health.status_code == 200 and health.json()["waiting"] == 1
    assert 'roost_requests_total{endpoint="/v1/chat/completions",status="503"} 2' in metrics
    assert "roost_requests_waiting 0" in metrics and "roost_requests_running 0" in metrics


async def test_engine_failure_is_500_and_mid_stream_an_error_event_then_done(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer, fail_after=3), settings, embedder=embedder)) as (
        client, http
    ):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=10)
        stream = await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=10, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="failed on purpose"):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content)
        raw = await http.post("/v1/chat/completions", json={"model": "echo", "messages": HELLO, "max_tokens": 10,
                                                            "stream": True})
    assert caught.value.status_code == 500
    assert "failed on purpose" in error_of(caught.value)["message"]
    assert "".join(c or "" for c in received) == echo_text(tokenizer, HELLO, 3)
    events = [line.removeprefix("data: ") for line in raw.text.split("\n\n") if line]
    assert raw.status_code == 200
    assert json.loads(events[-2])["error"]["type"] == "server_error"
    assert events[-1] == "[DONE]"


# adapters --------------------------------------------------------------------------------------


async def test_load_and_unload_lora_adapters_with_vllm_bodies(tokenizer, settings, embedder, tmp_path):
    engine = EchoEngine(tokenizer)
    folder = make_adapter_folder(tmp_path / "pirate")
    with Store(settings.home).writing("adapter", "poet-v1", {"base": "echo"}) as out:
        (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    async with in_process(create_app(engine, settings, embedder=embedder)) as (client, http):
        loaded = await http.post("/v1/load_lora_adapter", json={"lora_name": "pirate", "lora_path": str(folder)})
        from_store = await http.post("/v1/load_lora_adapter", json={"lora_name": "poet", "lora_path": "poet-v1"})
        again = await http.post("/v1/load_lora_adapter", json={"lora_name": "pirate", "lora_path": str(folder)})
        nowhere = await http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/no/such/dir"})
        not_lora = await http.post("/v1/load_lora_adapter", json={"lora_name": "y", "lora_path": str(tmp_path)})
        answer = await client.chat.completions.create(model="pirate", messages=HELLO, max_tokens=2)
        unloaded = await http.post("/v1/unload_lora_adapter", json={"lora_name": "pirate"})
        with pytest.raises(openai.NotFoundError, match="The model `pirate` does not exist."):
            await client.chat.completions.create(model="pirate", messages=HELLO, max_tokens=2)
        unknown = await http.post("/v1/unload_lora_adapter", json={"lora_name": "pirate"})
        base = await http.post("/v1/unload_lora_adapter", json={"lora_name": "echo"})
        ids = [m.id for m in (await client.models.list()).data]
    assert loaded.status_code == 200 and loaded.text == "Success: LoRA adapter 'pirate' added successfully."
    assert from_store.status_code == 200
    assert engine.adapters["poet"].base == "echo"
    assert again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]
    assert nowhere.status_code == 400 and nowhere.json()["error"]["param"] == "lora_path"
    assert not_lora.status_code == 400 and "adapter_config.json" in not_lora.json()["error"]["message"]
    assert answer.model == "pirate"
    assert unloaded.status_code == 200 and "removed successfully" in unloaded.text
    assert unknown.status_code == 404 and base.status_code == 404
    assert "pirate" not in ids and "poet" in ids


# traces and metrics --------------------------------------------------------------------------------


async def test_every_completion_is_traced_with_its_caller(tokenizer, settings, embedder):
    app = create_app(EchoEngine(tokenizer), settings, embedder=embedder)
    async with in_process(app) as (client, _):
        await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=4, temperature=0.2,
                                             extra_headers={"X-Roost-Caller": "triage-agent"}, user="ignored")
        stream = await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=3,
                                                      user="writer-bot", stream=True)
        async for _ in stream:
            pass
        await client.completions.create(model="echo", prompt="a b c", max_tokens=2, user="writer-bot")
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=HELLO, user="writer-bot")
    store = traces_of(settings)
    triage = store.list(caller="triage-agent")
    assert len(triage) == 1
    t = triage[0]
    assert (t.model, t.base, t.adapter, t.endpoint) == ("echo", "echo", None, "/v1/chat/completions")
    assert t.request["messages"] == HELLO
    assert t.request["params"]["temperature"] == 0.2 and t.request["params"]["max_tokens"] == 4
    assert t.output == echo_text(tokenizer, HELLO, 4) and t.finish_reason == "length"
    assert t.completion_tokens == 4 and t.prompt_tokens > 0 and t.latency_ms > 0 and t.status == 200
    writer = store.list(caller="writer-bot")
    assert sorted(w.status for w in writer) == [200, 200, 404]
    assert [w.time for w in writer] == sorted((w.time for w in writer), reverse=True)  # newest first
    assert {w.request.get("prompt") for w in writer} >= {"a b c"}
    failed = next(w for w in writer if w.status == 404)
    assert failed.error == "The model `nope` does not exist." and failed.output is None


async def test_metrics_count_requests_tokens_and_latency(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (client, http):
        for _ in range(2):
            await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=5)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=HELLO)
        response = await http.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'roost_requests_total{endpoint="/v1/chat/completions",status="200"} 2' in text
    assert 'roost_requests_total{endpoint="/v1/chat/completions",status="404"} 1' in text
    assert 'roost_completion_tokens_total{model="echo"} 10' in text
    assert 'roost_request_latency_seconds_count{endpoint="/v1/chat/completions"} 3' in text
    assert 'roost_time_to_first_token_seconds_bucket{endpoint="/v1/chat/completions",le="+Inf"} 2' in text
    assert "# TYPE roost_requests_waiting gauge" in text and "# TYPE roost_request_latency_seconds histogram" in text


async def test_openapi_lists_every_endpoint(tokenizer, settings, embedder):
    async with in_process(create_app(EchoEngine(tokenizer), settings, embedder=embedder)) as (_, http):
        schema = (await http.get("/openapi.json")).json()
    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                 "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/health", "/metrics"):
        assert path in schema["paths"]


# disconnects, on a real socket -------------------------------------------------------------------


async def test_a_disconnecting_client_frees_its_slot_at_once(tokenizer, settings, embedder):
    engine = EchoEngine(tokenizer, max_running=1, token_delay=0.02)
    app = create_app(engine, settings, embedder=embedder)
    body = {"model": "echo", "messages": HELLO, "max_tokens": 2000, "stream": True}

    async def queue_depth(http: httpx.AsyncClient) -> tuple[int, int]:
        metrics = (await http.get("/metrics")).text
        value = {line.split()[0]: int(float(line.split()[1])) for line in metrics.splitlines()
                 if line.startswith(("roost_requests_waiting", "roost_requests_running"))}
        return value["roost_requests_running"], value["roost_requests_waiting"]

    async def settled(http: httpx.AsyncClient) -> tuple[int, int]:
        deadline = time.monotonic() + 10
        while await queue_depth(http) != (0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return await queue_depth(http)

    with uvicorn_thread(app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = response.aiter_lines()  # read a few events, keeping the stream open
                received = [line for line in [await anext(lines) for _ in range(8)] if line]
                assert await queue_depth(http) == (1, 0)
                # a streaming client that gives up while queued behind it leaves the queue
                with pytest.raises(httpx.ReadTimeout):
                    await http.post("/v1/chat/completions", json=body, timeout=0.5)
                assert await poll(lambda: engine.waiting == 0)
            assert await settled(http) == (0, 0)
            # a non-streaming client that gives up (its read timeout) frees its slot too
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/chat/completions", json={**body, "stream": False}, timeout=0.5)
            assert await settled(http) == (0, 0)
    assert all(line.startswith("data: ") for line in received)
    assert engine.cancelled == 3
    assert [t.status for t in traces_of(settings).list()] == [499, 499, 499]
