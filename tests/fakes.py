"""A deterministic test-double engine for the HTTP app's tests.

:class:`EchoEngine` answers every request with the tokens of its own prompt, one
per step, so a test knows each output in advance. It keeps the real engine's
contract: a bounded queue (QueueFull), a fixed number of running slots, stop
strings, ``"length"``/``"stop"`` finish reasons, and cancellation by closing the
stream, which frees the slot at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from roost.backend.engine import (
    ContextLengthExceeded,
    Engine,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    QueueFull,
    UnknownModel,
)


class EchoEngine(Engine):
    """Echoes prompt tokens. ``token_delay`` seconds per step; ``fail_after`` steps raises mid-stream."""

    def __init__(self, tokenizer: Any, *, models: Sequence[str] = ("echo",), max_context: int = 2048,
                 max_running: int = 4, max_queue: int = 8, token_delay: float = 0.0,
                 fail_after: int | None = None) -> None:
        self._tokenizer = tokenizer
        self.bases = list(models)
        self.adapters: dict[str, ModelInfo] = {}
        self.max_context = max_context
        self.max_running = max_running
        self.max_queue = max_queue
        self.token_delay = token_delay
        self.fail_after = fail_after
        self.requests: list[GenerationRequest] = []
        self.running = 0
        self.waiting = 0
        self.cancelled = 0
        self.started = False
        self.stopped = False
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.max_running)
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def models(self) -> list[ModelInfo]:
        bases = [ModelInfo(name=name, base=name, max_context=self.max_context) for name in self.bases]
        return bases + list(self.adapters.values())

    def tokenizer(self, model: str) -> Any:
        if not any(info.name == model for info in self.models()):
            raise UnknownModel(model)
        return self._tokenizer

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.tokenizer(request.model)
        prompt, params = request.prompt_ids, request.params
        if len(prompt) + params.max_tokens > self.max_context:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.max_context} tokens; "
                f"the request needs {len(prompt) + params.max_tokens}"
            )
        if self.waiting >= self.max_queue:
            raise QueueFull(retry_after=2.0)
        assert self._slots is not None, "start() the engine first"
        self.requests.append(request)
        self.waiting += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            async for chunk in self._echo(prompt, params.max_tokens, params.stop):
                yield chunk
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
            self._slots.release()

    async def _echo(self, prompt: list[int], max_tokens: int, stops: Sequence[str]) -> AsyncIterator[GenerationChunk]:
        emitted: list[int] = []
        text = ""
        for step in range(max_tokens):
            await asyncio.sleep(self.token_delay)
            if self.fail_after is not None and step == self.fail_after:
                raise RuntimeError("the echo engine failed on purpose")
            token = prompt[step % len(prompt)]
            emitted.append(token)
            full = self._tokenizer.decode(emitted, skip_special_tokens=True)
            hits = [full.find(s) for s in stops if s in full]
            if hits:
                cut = full[:min(hits)]
                yield GenerationChunk(cut[len(text):], [token], len(prompt), step + 1, "stop")
                return
            finish = "length" if step + 1 == max_tokens else None
            yield GenerationChunk(full[len(text):], [token], len(prompt), step + 1, finish)
            text = full

    async def load_adapter(self, name: str, path: str, base: str | None = None) -> ModelInfo:
        if not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(f"{path} has no adapter_config.json")
        base = base or self.bases[0]
        if base not in self.bases:
            raise UnknownModel(base)
        info = ModelInfo(name=name, base=base, adapter=name, max_context=self.max_context)
        self.adapters[name] = info
        return info

    async def unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise UnknownModel(name)
        del self.adapters[name]

    def stats(self) -> EngineStats:
        return EngineStats(running=self.running, waiting=self.waiting)
