"""The OpenAI request bodies the backend accepts and the error object it answers with.

Fields that OpenAI clients send and roost does not use (``frequency_penalty: 0``,
``service_tier``, ...) are accepted and ignored, as vLLM does; a value that
would change the output and that roost cannot honour is refused with a 400 that
names it (see :meth:`SamplingRequest.unsupported`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class APIError(Exception):
    """An HTTP error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")


def context_length_exceeded(max_context: int, prompt_tokens: int, completion_tokens: int | None,
                            param: str = "messages") -> APIError:
    """The 400 that LiteLLM and the openai client recognise by its words "maximum context length"."""
    if completion_tokens is None:
        asked = f"your prompt has {prompt_tokens} tokens, leaving no room for a completion"
    else:
        asked = (f"you requested {prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the prompt, "
                 f"{completion_tokens} in the completion)")
    return APIError(
        400,
        f"This model's maximum context length is {max_context} tokens. However, {asked}. "
        "Please reduce the length of the prompt or of max_tokens.",
        param=param,
        code="context_length_exceeded",
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class SamplingRequest(BaseModel):
    """What chat and text completions share: the model and how to sample."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    n: int = Field(1, ge=1, le=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extras, which benchmarks use to force a fixed output length.
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    # Accepted when neutral; anything else is refused by unsupported().
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for the first field set to a value roost cannot honour, else None."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                return name, f"{name} is not supported by roost; omit it or send 0"
        if self.logit_bias:
            return "logit_bias", "logit_bias is not supported by roost; omit it"
        if self.logprobs:
            return "logprobs", "logprobs are not supported by roost; omit logprobs"
        limit = self.requested_max_tokens()
        if self.min_tokens and limit is not None and self.min_tokens > limit:
            return "min_tokens", f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({limit})"
        return None


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    top_logprobs: int | None = None

    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` (the newer name) wins over ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    def unsupported(self) -> tuple[str, str] | None:
        if self.top_logprobs:
            return "top_logprobs", "logprobs are not supported by roost; omit top_logprobs"
        return super().unsupported()


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(SamplingRequest):
    """POST /v1/completions: one prompt or a batch, as text or token ids."""

    prompt: Prompt
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list of prompts (each text or token ids)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]

    def unsupported(self) -> tuple[str, str] | None:
        if self.echo:
            return "echo", "echo is not supported by roost; prepend the prompt yourself"
        if self.suffix:
            return "suffix", "suffix (insertion) is not supported by roost; omit it"
        if self.best_of is not None and self.best_of != self.n:
            return "best_of", "best_of is not supported by roost; use n and pick among the choices"
        return super().unsupported()


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)
    user: str | None = None


class LoadLoraAdapterRequest(BaseModel):
    """POST /v1/load_lora_adapter, vLLM's body. ``lora_path`` may also be a store adapter name."""

    model_config = ConfigDict(extra="allow")

    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)
    base_model_name: str | None = None
    load_inplace: bool = False


class UnloadLoraAdapterRequest(BaseModel):
    """POST /v1/unload_lora_adapter, vLLM's body."""

    model_config = ConfigDict(extra="allow")

    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None
