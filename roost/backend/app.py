"""The OpenAI-compatible HTTP app over an :class:`~roost.backend.engine.Engine`.

The app validates requests, renders prompts (:mod:`roost.prompts`), applies an
alias's generation defaults, streams server-sent events, maps every failure to
OpenAI's error object and status code, records each completion in the trace
store and counts what /metrics reports. The engine only turns token ids into
more token ids.

Example:
    >>> app = create_app(TransformersEngine(settings), settings)
    >>> uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost import __version__
from roost.backend.embeddings import Embedder
from roost.backend.engine import (
    ContextLengthExceeded,
    Engine,
    EngineError,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    QueueFull,
    SamplingParams,
    UnknownModel,
)
from roost.backend.metrics import CONTENT_TYPE, BackendMetrics
from roost.backend.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    LoadLoraAdapterRequest,
    SamplingRequest,
    UnloadLoraAdapterRequest,
    context_length_exceeded,
    model_not_found,
)
from roost.backend.traces import Trace, TraceStore
from roost.config import Settings
from roost.errors import RoostError
from roost.prompts import PromptError, encode, render_chat
from roost.store import Store

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1024
"""Completion cap when a request and its alias name none: the rest of the context, at most this."""
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted (413 above it); 8 MiB holds ~2M tokens of text."""
CALLER_HEADER = "x-roost-caller"
RETENTION_CHECK_SECONDS = 3600

_ENDPOINTS = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/load_lora_adapter",
              "/v1/unload_lora_adapter", "/health", "/metrics", "/openapi.json", "/docs")

T = TypeVar("T")


def create_app(engine: Engine, settings: Settings, *, embedder: Embedder | None = None,
               traces: TraceStore | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The backend's FastAPI app. Its lifespan starts and stops ``engine``.

    Args:
        engine: what runs the models.
        settings: aliases (generation defaults), the API key, the store, trace retention.
        embedder: serves /v1/embeddings; default: the bundled all-MiniLM-L6-v2, loaded on first use.
        traces: where calls are recorded; default: the store's trace database.
        max_body_bytes: request bodies above this get a 413.
    """
    backend = Backend(engine, settings, embedder or Embedder(),
                      traces if traces is not None else TraceStore(Store(settings.home).traces_db))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        await backend.prune_traces()  # before serving, so old traces are gone once /health answers
        retention = asyncio.create_task(backend.apply_retention())
        try:
            yield
        finally:
            retention.cancel()
            with suppress(asyncio.CancelledError):
                await retention
            await engine.stop()
            await asyncio.to_thread(backend.traces.close)

    app = FastAPI(title="roost backend", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible API over roost's local models and adapters.")
    app.state.backend = backend
    app.add_middleware(_Guard, backend=backend, api_key=settings.backend.api_key, max_body_bytes=max_body_bytes)
    app.add_exception_handler(APIError, _api_error_response)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error_response)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error_response)  # type: ignore[arg-type]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = engine.stats()
        return {"status": "ok", "running": stats.running, "waiting": stats.waiting}

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(backend.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": backend.model_cards()}

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str) -> dict[str, Any]:
        for card in backend.model_cards():
            if card["id"] == model:
                return card
        raise model_not_found(model)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await backend.chat(body, request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await backend.complete(body, request)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        return await backend.embed(body)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: LoadLoraAdapterRequest) -> Response:
        return await backend.load_adapter(body)

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: UnloadLoraAdapterRequest) -> Response:
        return await backend.unload_adapter(body)

    return app


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


class Backend:
    """What the routes do, with the engine, settings, embedder, traces and metrics they share."""

    def __init__(self, engine: Engine, settings: Settings, embedder: Embedder, traces: TraceStore) -> None:
        self.engine = engine
        self.settings = settings
        self.embedder = embedder
        self.traces = traces
        self.metrics = BackendMetrics(self._queue_stats)

    def _queue_stats(self) -> tuple[int, int]:
        stats = self.engine.stats()
        return stats.running, stats.waiting

    async def prune_traces(self) -> None:
        """Delete traces older than the retention setting (``trace_retention_days``)."""
        days = self.settings.backend.trace_retention_days
        if days is None:
            return
        try:
            await asyncio.to_thread(self.traces.prune, days)
        except Exception:  # a locked or broken database must not take the server down
            logger.exception("could not prune the trace database %s", self.traces.path)

    async def apply_retention(self) -> None:
        """Prune traces every hour while the server runs."""
        while self.settings.backend.trace_retention_days is not None:
            await asyncio.sleep(RETENTION_CHECK_SECONDS)
            await self.prune_traces()

    # models ------------------------------------------------------------------

    def model_cards(self) -> list[dict[str, Any]]:
        """/v1/models entries: every name the engine serves, then the embeddings model."""
        cards = [{
            "id": info.name,
            "object": "model",
            "created": info.created,
            "owned_by": "roost",
            "root": info.adapter or info.base,
            "parent": info.base if info.adapter else None,
            "max_model_len": info.max_context,
        } for info in self.engine.models()]
        cards.append({"id": self.embedder.name, "object": "model", "created": 0, "owned_by": "roost",
                      "root": self.embedder.name, "parent": None, "max_model_len": self.embedder.max_tokens})
        return cards

    def model_info(self, name: str) -> ModelInfo:
        for info in self.engine.models():
            if info.name == name:
                return info
        raise model_not_found(name)

    def _tokenizer(self, model: str) -> Any:
        try:
            return self.engine.tokenizer(model)
        except UnknownModel:
            raise model_not_found(model) from None

    # completions ---------------------------------------------------------------

    async def chat(self, body: ChatCompletionRequest, request: Request) -> Response:
        call = _Call(self, "chat", body, request)
        try:
            call.payload = {"messages": body.messages, "tools": body.tools, "tool_choice": body.tool_choice,
                            "response_format": body.response_format}
            _check_supported(body)
            info = self.model_info(body.model)
            tokenizer = self._tokenizer(body.model)
            grammar = await self._grammar(body, tokenizer)
            try:
                ids = encode(tokenizer, render_chat(tokenizer, body.messages, tools=body.tools))
            except PromptError as exc:
                raise APIError(400, str(exc), param="messages") from None
            params = self._sampling(body, info, len(ids), param="messages")
            call.begin(info, params, prompts=[ids], grammar=grammar)
            return await self._respond(call, request, body.stream)
        except BaseException as exc:
            raise call.failed(exc) from None

    async def _grammar(self, body: ChatCompletionRequest, tokenizer: Any) -> Any:
        """The grammar that ``tools``/``tool_choice``/``response_format`` ask for, or None; 400 when invalid."""
        if not body.tools and body.tool_choice is None and body.response_format is None:
            return None
        from roost.backend.constrain import ConstraintError, compile_request

        try:
            # Compiling takes ~10 ms for a few tools (cached after); off the event loop all the same.
            return await asyncio.to_thread(
                compile_request, tokenizer, tools=body.tools, tool_choice=body.tool_choice,
                response_format=body.response_format, parallel_tool_calls=body.parallel_tool_calls is not False)
        except ConstraintError as exc:
            message = str(exc)
            param = "response_format" if message.startswith("response_format") else (
                "tool_choice" if message.startswith("tool_choice") else "tools")
            raise APIError(400, message, param=param) from None

    async def complete(self, body: CompletionRequest, request: Request) -> Response:
        call = _Call(self, "text", body, request)
        try:
            call.payload = {"prompt": body.prompt}
            _check_supported(body)
            info = self.model_info(body.model)
            tokenizer = self._tokenizer(body.model)
            texts = body.prompts()
            prompts = [self._encode_prompt(tokenizer, p, i, len(texts)) for i, p in enumerate(texts)]
            if not prompts:
                raise APIError(400, "prompt must not be an empty list", param="prompt")
            params = self._sampling(body, info, max(len(ids) for ids in prompts), param="prompt")
            call.begin(info, params, prompts=prompts)
            return await self._respond(call, request, body.stream)
        except BaseException as exc:
            raise call.failed(exc) from None

    @staticmethod
    def _encode_prompt(tokenizer: Any, prompt: str | list[int], index: int, count: int) -> list[int]:
        where = "prompt" if count == 1 else f"prompt[{index}]"
        if isinstance(prompt, str):
            # Like vLLM: raw prompts get the tokenizer's own special tokens (a BOS, for models that use one).
            ids = list(tokenizer(prompt)["input_ids"])
        else:
            vocab = len(tokenizer)
            bad = next((t for t in prompt if not 0 <= t < vocab), None)
            if bad is not None:
                raise APIError(400, f"{where} holds token id {bad}, outside the vocabulary (0..{vocab - 1})",
                               param="prompt")
            ids = list(prompt)
        if not ids:
            raise APIError(400, f"{where} is empty; send at least one token of text", param="prompt")
        return ids

    def _sampling(self, body: SamplingRequest, info: ModelInfo, prompt_tokens: int, param: str) -> SamplingParams:
        """The request's sampling parameters, with the alias's defaults where it names none."""
        alias = self.settings.alias(body.model)
        temperature = _first(body.temperature, alias.temperature if alias else None, 1.0)
        top_p = _first(body.top_p, alias.top_p if alias else None, 1.0)
        room = info.max_context - prompt_tokens
        requested = body.requested_max_tokens()
        if room <= 0:
            raise context_length_exceeded(info.max_context, prompt_tokens, None, param)
        if requested is not None and requested > room:
            raise context_length_exceeded(info.max_context, prompt_tokens, requested, param)
        max_tokens = requested or min(room, (alias.max_tokens if alias else None) or DEFAULT_MAX_TOKENS)
        if body.min_tokens > max_tokens:
            raise APIError(400, f"min_tokens ({body.min_tokens}) exceeds the {max_tokens} tokens this request may "
                           "generate; lower min_tokens or raise max_tokens", param="min_tokens")
        return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=body.stop_strings(),
                              seed=body.seed, min_tokens=body.min_tokens, ignore_eos=body.ignore_eos)

    async def _respond(self, call: _Call, request: Request, stream: bool) -> Response:
        choices = _merge(self.engine, call.requests)
        if not stream:
            async def run() -> None:
                async with aclosing(choices):
                    async for index, chunk in choices:
                        call.on_chunk(index, chunk)

            try:
                await _unless_disconnected(request, run())
            except ClientDisconnected:
                call.status, call.error = 499, "client disconnected"  # nginx's code; nobody reads this answer
                call.record()
                return Response(status_code=499)
            call.record()
            return JSONResponse(call.final_body())

        # Wait for the first chunk before sending headers: a full queue or an unknown
        # model then still gets its own status code instead of a 200 with an error event.
        try:
            first = await _unless_disconnected(request, anext(choices, None))
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await choices.aclose()
            if not isinstance(exc, ClientDisconnected):
                raise
            call.status, call.error = 499, "client disconnected"
            call.record()
            return Response(status_code=499)
        return _EventStream(self._events(call, choices, first))

    async def _events(self, call: _Call, choices: AsyncIterator[tuple[int, GenerationChunk]],
                      first: tuple[int, GenerationChunk] | None) -> AsyncIterator[str]:
        try:
            try:
                for event in call.opening_events():
                    yield _sse(event)
                item = first
                while item is not None:
                    for event in call.on_chunk(*item):
                        yield _sse(event)
                    item = await anext(choices, None)
                usage = call.usage_event()
                if usage is not None:
                    yield _sse(usage)
                call.status = 200
            except Exception as exc:  # mid-stream: headers are gone, so an error event, then [DONE]
                error = _as_api_error(exc, call.trace.model)
                call.status, call.error = error.status, error.message
                yield _sse(error.body())
            yield "data: [DONE]\n\n"
        finally:
            # Runs on completion and when the client disconnects (cancelled or closed):
            # closing the engine streams frees their slots at once.
            with anyio.CancelScope(shield=True):
                await choices.aclose()
            if call.status is None:
                call.status, call.error = 499, "client disconnected"
            call.record()

    # embeddings -------------------------------------------------------------------

    async def embed(self, body: EmbeddingRequest) -> dict[str, Any]:
        if not self.embedder.answers_to(body.model):
            raise model_not_found(body.model)
        if body.dimensions is not None and body.dimensions != self.embedder.dimensions:
            raise APIError(400, f"{self.embedder.name} gives {self.embedder.dimensions} dimensions; "
                           f"omit dimensions or send {self.embedder.dimensions}", param="dimensions")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise APIError(400, "input must not be an empty list", param="input")
        if not all(isinstance(t, str) for t in texts):
            raise APIError(400, "input must be text: the embeddings model reads strings, not token ids "
                           "(for LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False)", param="input")
        try:
            vectors, tokens = await self.engine.offload(functools.partial(self.embedder.embed_sync, texts))
        except Exception as exc:
            raise _as_api_error(exc, body.model) from None
        data = []
        for i, vector in enumerate(vectors):
            if body.encoding_format == "base64":
                value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            else:
                value = vector.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        self.metrics.prompt_tokens.inc(tokens, model=self.embedder.name)
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # adapters -----------------------------------------------------------------------

    async def load_adapter(self, body: LoadLoraAdapterRequest) -> Response:
        name = body.lora_name
        path, base = self._adapter_source(body.lora_path, body.base_model_name)
        served = {info.name: info for info in self.engine.models()}
        if name in served:
            if served[name].adapter is None:
                raise APIError(400, f"'{name}' already names a base model or alias; pick another lora_name",
                               param="lora_name")
            if not body.load_inplace:
                raise APIError(400, f"The lora adapter '{name}' has already been loaded.", param="lora_name")
            await self.engine.unload_adapter(name)
        try:
            await self.engine.load_adapter(name, str(path), base)
        except UnknownModel:
            raise model_not_found(base or name) from None
        except EngineError as exc:
            raise _as_api_error(exc, name) from None
        except (RoostError, ValueError, OSError, KeyError) as exc:
            raise APIError(400, f"could not load adapter '{name}' from {path}: {exc}", param="lora_path") from None
        logger.info("loaded adapter '%s' from %s", name, path)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    def _adapter_source(self, lora_path: str, base: str | None) -> tuple[Path, str | None]:
        """``lora_path`` as a folder, or a store adapter's folder (and the base its lineage records)."""
        path = Path(lora_path).expanduser()
        if path.is_dir():
            return path, base
        store = Store(self.settings.home)
        try:
            entry = store.get("adapter", lora_path)
        except RoostError:
            entry = None
        if entry is None:
            raise APIError(400, f"lora_path '{lora_path}' is neither an adapter folder nor an adapter in the store "
                           f"({store.dir_for('adapter')})", param="lora_path")
        return entry.path, base or entry.lineage.get("base")

    async def unload_adapter(self, body: UnloadLoraAdapterRequest) -> Response:
        name = body.lora_name
        if not any(info.name == name and info.adapter is not None for info in self.engine.models()):
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", param="lora_name",
                           code="model_not_found")
        try:
            await self.engine.unload_adapter(name)
        except UnknownModel:
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", param="lora_name",
                           code="model_not_found") from None
        logger.info("unloaded adapter '%s'", name)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


class _Call:
    """One chat or text completion in flight: its choices, usage, trace and metrics.

    ``kind`` is ``"chat"`` or ``"text"``; it picks the OpenAI object shapes.
    """

    def __init__(self, backend: Backend, kind: str, body: SamplingRequest, request: Request) -> None:
        self.backend = backend
        self.kind = kind
        self.body = body
        self.started = time.perf_counter()
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        caller = request.headers.get(CALLER_HEADER) or body.user
        self.trace = Trace(endpoint=self.endpoint, model=body.model, request={}, caller=caller)
        self.payload: dict[str, Any] = {}
        self.params: SamplingParams | None = None
        self.requests: list[GenerationRequest] = []
        self.prompt_tokens = 0
        self.texts: list[str] = []
        self.finish: list[str | None] = []
        self.completion_tokens: list[int] = []
        self.first_token_at: float | None = None
        self.status: int | None = None
        self.error: str | None = None
        self._recorded = False
        self.tool_streams: list[Any] | None = None

    def begin(self, info: ModelInfo, params: SamplingParams, prompts: Sequence[list[int]],
              grammar: Any = None) -> None:
        """Build the engine requests: ``n`` choices per prompt, choice ``p * n + i`` for prompt ``p``.

        With a ``grammar`` every choice decodes under its own constraint; when the
        request has tools, each choice's text is split into content and tool calls.
        """
        n = self.body.n
        self.params = params
        self.trace.base, self.trace.adapter = info.base, info.adapter
        self.prompt_tokens = sum(len(ids) for ids in prompts)
        for p, ids in enumerate(prompts):
            for i in range(n):
                # Distinct seeds per choice, or n seeded choices would all be the same text.
                seed = None if params.seed is None else params.seed + i
                constraint = grammar.new_constraint() if grammar is not None else None
                self.requests.append(GenerationRequest(f"{self.id}-{p * n + i}", self.body.model, ids,
                                                       dataclasses.replace(params, seed=seed), constraint))
        count = len(self.requests)
        self.texts, self.finish, self.completion_tokens = [""] * count, [None] * count, [0] * count
        if self.kind == "chat" and getattr(self.body, "tools", None) and self.body.tool_choice != "none":
            from roost.backend.constrain import ToolCallStream

            self.tool_streams = [ToolCallStream() for _ in range(count)]

    # streaming events ------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        event: dict[str, Any] = {"id": self.id, "object": obj, "created": self.created, "model": self.body.model,
                                 "system_fingerprint": None, "choices": choices}
        if self.body.include_usage():
            event["usage"] = None
        return event

    def opening_events(self) -> list[dict[str, Any]]:
        if self.kind != "chat":
            return []
        return [self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None}]) for i in range(len(self.requests))]

    def on_chunk(self, index: int, chunk: GenerationChunk) -> list[dict[str, Any]]:
        """Account for one engine chunk; return the SSE events it makes."""
        if self.first_token_at is None and chunk.token_ids:
            self.first_token_at = time.perf_counter()
            self.backend.metrics.ttft.observe(self.first_token_at - self.started, endpoint=self.endpoint)
        self.texts[index] += chunk.text
        self.completion_tokens[index] = chunk.completion_tokens
        if chunk.finish_reason:
            self.finish[index] = chunk.finish_reason
        if not self.body.stream:
            return []
        events = []
        if self.tool_streams is not None:
            return self._tool_events(index, chunk)
        if self.kind == "chat":
            if chunk.text:
                events.append(self._chunk([{"index": index, "delta": {"content": chunk.text}, "logprobs": None,
                                            "finish_reason": None}]))
            if chunk.finish_reason:
                events.append(self._chunk([{"index": index, "delta": {}, "logprobs": None,
                                            "finish_reason": chunk.finish_reason}]))
        elif chunk.text or chunk.finish_reason:
            events.append(self._chunk([{"index": index, "text": chunk.text, "logprobs": None,
                                        "finish_reason": chunk.finish_reason}]))
        return events

    def _tool_events(self, index: int, chunk: GenerationChunk) -> list[dict[str, Any]]:
        """Streamed chat with tools: content deltas as they come, each tool call whole when it closes."""
        stream = self.tool_streams[index]
        deltas = [stream.feed(chunk.text)]
        if chunk.finish_reason:
            deltas.append(stream.finish())
        events = []
        for delta in deltas:
            if delta.content:
                events.append(self._chunk([{"index": index, "delta": {"content": delta.content}, "logprobs": None,
                                            "finish_reason": None}]))
            if delta.tool_calls:
                events.append(self._chunk([{"index": index, "delta": {"tool_calls": delta.tool_calls},
                                            "logprobs": None, "finish_reason": None}]))
        if chunk.finish_reason:
            finish = "tool_calls" if stream.calls else chunk.finish_reason
            events.append(self._chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}]))
        return events

    def _message(self, i: int) -> tuple[dict[str, Any], str | None]:
        """Choice ``i`` as a chat message and its finish reason, tool calls split out of the text."""
        text, finish = self.texts[i], self.finish[i]
        calls = None
        if self.tool_streams is not None:
            from roost.backend.constrain import parse_tool_calls

            parsed, content = parse_tool_calls(text)
            if parsed:
                calls, text, finish = parsed, (content or None), "tool_calls"
        message = {"role": "assistant", "content": text, "refusal": None, "tool_calls": calls}
        return message, finish

    def usage(self) -> dict[str, int]:
        completion = sum(self.completion_tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def usage_event(self) -> dict[str, Any] | None:
        if not self.body.include_usage():
            return None
        return {**self._chunk([]), "usage": self.usage()}

    def final_body(self) -> dict[str, Any]:
        """The non-streaming response."""
        if self.kind == "chat":
            choices = []
            for i in range(len(self.texts)):
                message, finish = self._message(i)
                choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": self.finish[i]}
                       for i, text in enumerate(self.texts)]
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.body.model,
                "system_fingerprint": None, "choices": choices, "usage": self.usage()}

    # ending ---------------------------------------------------------------------

    def failed(self, exc: BaseException) -> BaseException:
        """Record a call that ended in ``exc``; return the exception to raise (an APIError when it maps)."""
        if not isinstance(exc, Exception):  # cancelled: the client is gone
            self.status, self.error = 499, "client disconnected"
            self.record()
            return exc
        error = _as_api_error(exc, self.trace.model)
        self.status, self.error = error.status, error.message
        self.record()
        return error

    def record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        trace = self.trace
        trace.latency_ms = (time.perf_counter() - self.started) * 1000
        trace.status = self.status or 200
        trace.error = self.error
        params = dataclasses.asdict(self.params) if self.params else {}
        params.update(n=self.body.n, stream=self.body.stream)
        trace.request = {**self.payload, "params": params}
        if self.requests:
            trace.output, trace.finish_reason = self.texts[0], self.finish[0]
            if len(self.texts) > 1:
                trace.choices = [{"text": t, "finish_reason": f} for t, f in zip(self.texts, self.finish, strict=True)]
            trace.prompt_tokens = self.prompt_tokens
            trace.completion_tokens = sum(self.completion_tokens)
            metrics = self.backend.metrics
            metrics.prompt_tokens.inc(self.prompt_tokens, model=trace.model)
            metrics.completion_tokens.inc(trace.completion_tokens, model=trace.model)
        try:
            self.backend.traces.record(trace)
        except Exception:  # tracing must never fail a request
            logger.exception("could not record trace %s", trace.id)


def _check_supported(body: SamplingRequest) -> None:
    problem = body.unsupported()
    if problem is not None:
        param, message = problem
        raise APIError(400, message, param=param)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


async def _merge(engine: Engine, requests: Sequence[GenerationRequest]) -> AsyncIterator[tuple[int, GenerationChunk]]:
    """Chunks of every request as ``(index, chunk)``, in the order they come.

    Closing this iterator closes every engine stream, which cancels the requests.
    """
    if len(requests) == 1:
        stream = engine.generate(requests[0])
        try:
            async for chunk in stream:
                yield 0, chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return

    queue: asyncio.Queue[tuple[int, GenerationChunk | None, BaseException | None]] = asyncio.Queue()

    async def pump(index: int, request: GenerationRequest) -> None:
        stream = engine.generate(request)
        try:
            async for chunk in stream:
                await queue.put((index, chunk, None))
        except Exception as exc:
            await queue.put((index, None, exc))
            return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        await queue.put((index, None, None))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    try:
        running = len(tasks)
        while running:
            index, chunk, error = await queue.get()
            if error is not None:
                raise error
            if chunk is None:
                running -= 1
            else:
                yield index, chunk
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, but cancel it and raise :class:`ClientDisconnected` if the client goes away first."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def run() -> T:
        return await work

    task = asyncio.ensure_future(run())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientDisconnected
    finally:
        for t in (task, watch):
            t.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(task, watch, return_exceptions=True)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


class _EventStream(StreamingResponse):
    """Server-sent events whose iterator is closed however the response ends.

    Starlette abandons the body iterator when the client disconnects; closing it
    here runs its ``finally`` at once, which cancels the engine requests.
    """

    def __init__(self, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


# errors ---------------------------------------------------------------------------


def _as_api_error(exc: BaseException, model: str) -> APIError:
    """The OpenAI error for anything a request can raise."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, UnknownModel):
        return model_not_found(model)
    if isinstance(exc, QueueFull):
        return APIError(503, str(exc), type="server_error", code="overloaded",
                        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
    if isinstance(exc, ContextLengthExceeded):
        message = str(exc)
        if "maximum context length" not in message:
            message = f"This model's maximum context length was exceeded: {message}"
        return APIError(400, message, code="context_length_exceeded", param="messages")
    if isinstance(exc, EngineError):
        kind = "server_error" if exc.status >= 500 else "invalid_request_error"
        return APIError(exc.status, str(exc), type=kind)
    if isinstance(exc, PromptError):
        return APIError(400, str(exc), param="messages")
    logger.error("request failed", exc_info=exc)
    return APIError(500, f"The backend failed: {type(exc).__name__}: {exc}", type="server_error")


async def _api_error_response(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


async def _validation_error_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 as OpenAI's 400, naming the first bad field."""
    error = exc.errors()[0]
    loc = [p for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "invalid JSON")
        message = f"We could not parse the JSON body of your request ({detail}); send a JSON object."
        return JSONResponse(APIError(400, message).body(), status_code=400)
    if not loc:
        message = "The request body must be a JSON object."
        if error.get("type") != "missing":
            message += f" {error.get('msg')}."
        return JSONResponse(APIError(400, message).body(), status_code=400)
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and part not in _UNION_TAGS:
            path += f".{part}" if path else part
    if error.get("type") == "missing":
        message = f"Missing required parameter: '{path}'."
    else:
        message = f"Invalid value for '{path}': {error.get('msg')} (got {json.dumps(error.get('input'))[:200]})."
    return JSONResponse(APIError(400, message, param=path).body(), status_code=400)


async def _http_error_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    message = f"{exc.detail}: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    return JSONResponse(APIError(exc.status_code, message, type=kind).body(), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


# middleware -----------------------------------------------------------------------


class _Guard:
    """Checks the API key and the body size, and counts every request for /metrics.

    The key guards ``/v1/*`` (as vLLM does); /health and /metrics stay open.
    """

    def __init__(self, app: ASGIApp, backend: Backend, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = backend.metrics
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else ("/v1/models/{model}" if path.startswith("/v1/models/")
                                                    else "other")
        status = 500
        started = time.perf_counter()
        self.metrics.in_flight += 1

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            error = self._refuse(scope, path)
            if error is not None:
                await self._send_error(error, send_counted)
                return
            await self._call_limited(scope, receive, send_counted)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.requests.inc(endpoint=endpoint, status=str(status))
            self.metrics.latency.observe(time.perf_counter() - started, endpoint=endpoint)

    def _refuse(self, scope: Scope, path: str) -> APIError | None:
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and path.startswith("/v1/"):
            auth = headers.get("authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not token:
                return APIError(401, "Missing API key: send it as 'Authorization: Bearer KEY'.",
                                code="invalid_api_key")
            if not hmac.compare_digest(token.strip(), self.api_key):
                return APIError(401, "Incorrect API key provided.", code="invalid_api_key")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return _too_large(int(length), self.max_body_bytes)
        return None

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting body bytes as they arrive (a chunked body has no Content-Length)."""
        received = 0
        too_large = False
        started = False

        async def receive_limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    # Stop the body here; the app's answer is replaced by the 413 below.
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def send_checked(message: Message) -> None:
            nonlocal started
            if too_large:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive_limited, send_checked)
        if too_large and not started:
            await self._send_error(_too_large(received, self.max_body_bytes), send)

    @staticmethod
    async def _send_error(error: APIError, send: Callable[[Message], Awaitable[None]]) -> None:
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"The request body is {size} bytes or more; the limit is {limit} bytes.",
                    code="request_too_large")
