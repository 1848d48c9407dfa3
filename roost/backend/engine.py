"""The engine interface: what the HTTP app needs from whatever runs the models.

The app renders prompts, validates requests and speaks HTTP; an engine only
turns token ids into more token ids. The transformers engine implements this on
one machine; a vLLM engine can implement it beyond one.

An engine request is cancelled by closing its async iterator (``aclose()``),
which the app does when a client disconnects: the engine must free the slot at
once.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class EngineError(Exception):
    """Base of the errors an engine raises; the app maps each to an HTTP status."""

    status = 500


class UnknownModel(EngineError):
    status = 404


class QueueFull(EngineError):
    """The bounded queue of waiting requests is full; the app answers 503 with Retry-After."""

    status = 503

    def __init__(self, message: str = "the backend is overloaded; retry shortly", retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class ContextLengthExceeded(EngineError):
    status = 400


class InvalidRequest(EngineError):
    """The request or adapter folder is malformed (empty prompt, token id out of range, not a LoRA folder)."""

    status = 400


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` is greedy."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False


class TokenConstraint(Protocol):
    """Per-request constrained decoding (a JSON schema, a tool call), driven by the engine each step.

    The engine calls :meth:`mask` on the request's row of logits before sampling,
    then :meth:`advance` with the token it picked. Once :meth:`is_terminated` is
    true the output is complete and the engine finishes the request with ``"stop"``.
    """

    def mask(self, logits: Any) -> None:
        """Set the logits of every token the grammar forbids to -inf, in place (1-D tensor)."""

    def advance(self, token_id: int) -> None:
        """Accept the sampled token."""

    def is_terminated(self) -> bool:
        """True once the grammar has produced a complete value."""


@dataclass
class GenerationRequest:
    """One sequence to generate. ``model`` is the served name (alias or store name)."""

    request_id: str
    model: str
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    constraint: TokenConstraint | None = None


@dataclass
class GenerationChunk:
    """What one decode step produced for a request.

    ``text`` is the new text since the previous chunk (may be empty while a
    multi-byte character or a possible stop string is held back).
    ``finish_reason`` is set on the last chunk only: ``"stop"`` or ``"length"``.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A name the engine serves: a base, or an adapter over a base."""

    name: str
    base: str
    adapter: str | None = None
    max_context: int = 2048
    created: int = 0


@dataclass
class EngineStats:
    running: int = 0
    waiting: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """Runs models. Async methods are called from the app's event loop."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load what the configuration names and start the scheduler."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the scheduler and fail every request still running."""

    @abc.abstractmethod
    def models(self) -> list[ModelInfo]:
        """Every name this engine answers to right now."""

    @abc.abstractmethod
    def tokenizer(self, model: str) -> Any:
        """The Hugging Face tokenizer of ``model`` (raises :class:`UnknownModel`)."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the chunks of one request; raises QueueFull, UnknownModel, ContextLengthExceeded."""

    @abc.abstractmethod
    async def load_adapter(self, name: str, path: str, base: str | None = None) -> ModelInfo:
        """Load a PEFT adapter folder under ``name`` on top of ``base`` (default: the adapter's own base)."""

    @abc.abstractmethod
    async def unload_adapter(self, name: str) -> None:
        """Drop adapter ``name``; requests for it 404 afterwards."""

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        """Queue depth and running batch size, for /metrics and /health."""

    async def offload(self, work: Callable[[], T]) -> T:
        """Run blocking tensor work (the embeddings model) where it does not fight the engine for the CPU.

        The default is a worker thread; an engine with a scheduler thread runs it there, between steps.
        """
        return await asyncio.to_thread(work)
