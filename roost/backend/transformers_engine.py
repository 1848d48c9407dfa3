"""The default engine: Hugging Face transformers models on this machine, batched continuously.

One scheduler thread owns every model. Each loaded base has ``max_batch_size``
*slots* in a preallocated key/value cache (:class:`SlotCache`); a request takes a
slot, is prefilled in chunks, then decodes together with every other running
request of that base, one token per step. Requests join and leave between steps,
so nobody waits for a batch to drain. Adapters of one base share its batch: PEFT
applies each row's LoRA (``adapter_names``; base rows are ``"__base__"``).

The event loop only enqueues requests and reads chunks from per-request asyncio
queues, so ``/health`` stays responsive while a forward pass runs.

Example:
    >>> engine = TransformersEngine(load_settings(), ["default"])
    >>> await engine.start()
    >>> async for chunk in engine.generate(GenerationRequest("r1", "default", ids)):
    ...     print(chunk.text, end="")
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.backend.engine import (
    ContextLengthExceeded,
    Engine,
    EngineError,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    InvalidRequest,
    ModelInfo,
    QueueFull,
    T,
    UnknownModel,
)
from roost.config import Settings
from roost.errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

BASE_ROWS = "__base__"
"""PEFT's adapter name for batch rows that run the bare base model."""

# Padded prompt tokens per prefill forward. A long prompt is prefilled in chunks of
# this size between decode steps, so running requests stall for one chunk (~0.2 s
# for SmolLM2-135M on 2 cores), not for the whole prompt.
PREFILL_TOKENS = 512
# Initial key/value positions per slot; the cache doubles as needed up to the
# model's context and shrinks back when idle (16 slots x 256 positions of
# SmolLM2-135M in bf16 = 47 MB).
INITIAL_KV_POSITIONS = 256

RUNNERS = ("auto", "lean", "transformers")
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split()))
    return False


def resolve_dtype(dtype: str) -> Any:
    """``"auto"`` -> bf16 where the CPU computes it natively (about 2x faster than fp32 here), else fp32."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not supported; use one of auto, {', '.join(_DTYPES)}")
    return getattr(torch, _DTYPES[dtype])


# the key/value cache ------------------------------------------------------------


class SlotCache:
    """Key/value cache with one row ("slot") per running request, duck-typed as a transformers ``Cache``.

    Each layer holds ``[slots, kv_heads, capacity + 1, head_dim]``. Before each
    forward, :meth:`plan` says which slots take part (a contiguous range, so that
    attention reads a view, not a copy) and at which position each new token goes;
    the model's attention layers then call :meth:`update`. Column ``capacity`` is
    scratch: a prefill's padding columns write there and no attention ever reads it.
    """

    def __init__(self, layers: int, slots: int, kv_heads: int, head_dim: int, dtype: Any,
                 capacity: int = INITIAL_KV_POSITIONS) -> None:
        self.shape = (slots, kv_heads, head_dim)
        self.dtype = dtype
        self.layers = layers
        self._allocate(capacity)
        self._lo = self._hi = self._kv_len = 0
        self._rows: Any = None
        self._positions: Any = None

    def _allocate(self, capacity: int) -> None:
        import torch

        slots, heads, dim = self.shape
        self.keys = [torch.zeros(slots, heads, capacity + 1, dim, dtype=self.dtype) for _ in range(self.layers)]
        self.values = [torch.zeros(slots, heads, capacity + 1, dim, dtype=self.dtype) for _ in range(self.layers)]
        self.capacity = capacity

    @property
    def scratch(self) -> int:
        return self.capacity

    def reserve(self, length: int, used_slots: int, limit: int) -> None:
        """Make room for ``length`` positions per slot, keeping the first ``used_slots`` slots' contents."""
        if length <= self.capacity:
            return
        capacity = min(max(self.capacity * 2, 1 << (length - 1).bit_length()), max(limit, length))
        old_keys, old_values, old_capacity = self.keys, self.values, self.capacity
        self._allocate(capacity)
        for new, old in zip(self.keys + self.values, old_keys + old_values, strict=True):
            new[:used_slots, :, :old_capacity] = old[:used_slots, :, :old_capacity]
        logger.debug("key/value cache grown to %d positions per slot", capacity)

    def shrink(self) -> None:
        """Give memory back when no request runs."""
        if self.capacity > INITIAL_KV_POSITIONS:
            self._allocate(INITIAL_KV_POSITIONS)

    def plan(self, lo: int, hi: int, rows: Any, positions: Any, kv_len: int) -> None:
        """Route the next forward: batch row i is slot ``rows[i]`` in ``lo..hi-1``; its tokens go to ``positions``.

        ``positions`` is ``[batch]`` for a decode step or ``[batch, tokens]`` for a prefill;
        attention sees the first ``kv_len`` positions of each slot.
        """
        self._lo, self._hi, self._kv_len = lo, hi, kv_len
        self._rows = rows if positions.dim() == 1 else rows[:, None]
        self._positions = positions

    def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[Any, Any]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._positions.dim() == 1:  # decode: key_states is [batch, heads, 1, dim]
            keys[self._rows, :, self._positions] = key_states[:, :, 0]
            values[self._rows, :, self._positions] = value_states[:, :, 0]
        else:  # prefill: the indexed view is [batch, tokens, heads, dim]
            keys[self._rows, :, self._positions] = key_states.transpose(1, 2)
            values[self._rows, :, self._positions] = value_states.transpose(1, 2)
        return keys[self._lo:self._hi, :, :self._kv_len], values[self._lo:self._hi, :, :self._kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy slot ``src``'s first ``length`` positions into slot ``dst``."""
        for tensor in self.keys + self.values:
            tensor[dst, :, :length] = tensor[src, :, :length]

    def swap(self, a: int, b: int, length: int) -> None:
        for tensor in self.keys + self.values:
            tmp = tensor[a, :, :length].clone()
            tensor[a, :, :length] = tensor[b, :, :length]
            tensor[b, :, :length] = tmp


# text ---------------------------------------------------------------------------


class TextStream:
    """Generated token ids -> text deltas: whole characters only, stop strings cut off and held back.

    Decoding uses a window of recent tokens (two offsets) so that a character split
    over several byte-level tokens, or a word whose leading space depends on the
    previous token, comes out right without re-decoding the whole output each step.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""
        self._prefix = self._read = self._sent = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int, final: bool = False) -> None:
        """Append a token; its text joins :attr:`text` once it forms whole characters (or at ``final``)."""
        self.ids.append(token_id)
        self._catch_up(final)

    def _catch_up(self, final: bool) -> None:
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self.text += after[len(before):]
            self._prefix, self._read = self._read, len(self.ids)

    def find_stop(self, searched_from: int) -> bool:
        """Cut :attr:`text` at the first stop string that ends after ``searched_from``; True if one was found."""
        if not self.stop:
            return False
        start = max(0, searched_from - max(len(s) for s in self.stop) + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if not hits:
            return False
        self.text = self.text[:min(hits)]
        return True

    def take(self, final: bool) -> str:
        """The text not yet handed out, less a tail that could still become a stop string (unless ``final``)."""
        if final:
            if self._read < len(self.ids):
                self._catch_up(final=True)
            end = len(self.text)
        else:
            end = len(self.text) - self._held_back()
        end = max(end, self._sent)
        delta, self._sent = self.text[self._sent:end], end
        return delta

    def _held_back(self) -> int:
        longest = 0
        for stop in self.stop:
            for k in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:k]):
                    longest = k
                    break
        return longest


# requests -----------------------------------------------------------------------


@dataclass(eq=False)
class _Sequence:
    """One request inside the scheduler."""

    request: GenerationRequest
    base: _Base
    adapter: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    generator: Any
    text: TextStream
    cached: int = 0  # positions of this request in its slot's cache
    output_ids: list[int] = field(default_factory=list)
    next_token: int = -1  # sampled last step; enters the cache next step
    cancelled: bool = False
    finished: bool = False

    @property
    def prompt_left(self) -> int:
        return len(self.request.prompt_ids) - self.cached if not self.output_ids else 0


class _Stream(AsyncIterator[GenerationChunk]):
    """What :meth:`TransformersEngine.generate` returns; ``aclose()`` cancels the request."""

    def __init__(self, engine: TransformersEngine, seq: _Sequence) -> None:
        self._engine = engine
        self._seq = seq
        self._done = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._seq.queue.get()
        except asyncio.CancelledError:
            self._close()
            raise
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if item.finish_reason is not None:
            self._done = True
        return item

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._engine._cancel(self._seq)

    def __del__(self) -> None:
        if not self._done and not self._seq.finished:
            self._seq.cancelled = True


# loaded models ------------------------------------------------------------------


@dataclass(eq=False)
class _Adapter:
    key: str  # internal name (PEFT adapter / LoRA bank entry): store names may hold '.', a module key cannot
    label: str  # the name it was first loaded under (store name or hot-load name), shown in ModelInfo.adapter
    path: Path
    names: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Base:
    """A loaded base model, its adapters, its slots and the requests running in them."""

    name: str
    path: Path
    model: Any
    tokenizer: Any
    cache: SlotCache
    max_context: int
    vocab_size: int
    eos_ids: list[int]
    pad_id: int
    created: int
    runner: Any = None  # a LlamaRunner, or None to run the transformers model (through PEFT once adapters load)
    peft: Any = None
    adapters: dict[str, _Adapter] = field(default_factory=dict)
    rows: list[_Sequence] = field(default_factory=list)  # index == slot
    decoding: int = 0  # rows[:decoding] decode; the rest are still being prefilled

    def forward(self, input_ids: Any, mask: Any, position_ids: Any, adapters: list[str]) -> Any:
        """Last-position logits ``[batch, vocab]`` for a batch already routed in :attr:`cache`."""
        if self.runner is not None:
            rows = [0 if name == BASE_ROWS else self.runner.lora.index(name) for name in adapters]
            return self.runner.forward(input_ids, position_ids, mask, self.cache, rows if any(rows) else None)
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids,
                                  "cache": self.cache, "use_cache": True, "logits_to_keep": 1}
        if self.peft is not None:
            out = self.peft(**kwargs, adapter_names=adapters)
        else:
            out = self.model(**kwargs)
        return out.logits[:, -1, :]


@dataclass(frozen=True)
class _Route:
    info: ModelInfo
    base: _Base
    adapter: _Adapter | None


# the engine ---------------------------------------------------------------------


class TransformersEngine(Engine):
    """Serve local bases and their LoRA adapters with continuous batching on CPU.

    Args:
        settings: where the store is and which aliases exist.
        models: names (aliases or store names) to serve; default: every alias whose base is in the store.
        dtype: ``"auto"`` (bf16 where the CPU has native bf16, else fp32), ``"float32"`` or ``"bfloat16"``.
        max_batch_size: requests decoded together per base (the cache's slots).
        max_queue: requests that may wait for a slot per base before :class:`QueueFull`.
        runner: ``"auto"`` (the lean Llama-family runner where it applies, else transformers), ``"lean"``
            or ``"transformers"`` (the model's own forward, with PEFT for adapters).
        threads: CPU threads for tensor operations while the engine runs (torch's setting is process-wide);
            default: the ``[backend] threads`` setting, else torch's default (all cores).
            On a machine shared with other busy processes, 1 avoids OpenMP threads waiting on each other
            (measured here under load: a tiny model's steps went from 250 ms to 3 ms).
        quantization: ``"auto"`` (int4 decode kernels for bases whose weights are already 4-bit per group,
            see :mod:`roost.backend.llama_runner`) or ``"none"``; default: the ``[backend]`` setting.
    """

    def __init__(self, settings: Settings, models: list[str] | None = None, *, dtype: str = "auto",
                 max_batch_size: int = 16, max_queue: int = 64, runner: str = "auto",
                 threads: int | None = None, quantization: str | None = None) -> None:
        from roost.backend.llama_runner import QUANTIZATION

        quantization = quantization or settings.backend.quantization
        threads = threads if threads is not None else settings.backend.threads
        if quantization not in QUANTIZATION:
            raise ConfigError(f"quantization '{quantization}' is not one of {', '.join(QUANTIZATION)}")
        if runner not in RUNNERS:
            raise ConfigError(f"runner '{runner}' is not one of {', '.join(RUNNERS)}")
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue < 0:
            raise ConfigError(f"max_queue must be 0 or more, got {max_queue}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        if dtype != "auto" and dtype not in _DTYPES:
            raise ConfigError(f"dtype '{dtype}' is not supported; use one of auto, {', '.join(_DTYPES)}")
        self.settings = settings
        self.requested = list(models) if models is not None else None
        self.dtype_name = dtype
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.runner = runner
        self.threads = threads
        self.quantization = quantization
        self._bases: dict[str, _Base] = {}
        self._routes: dict[str, _Route] = {}
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._lock = threading.Lock()  # guards _waiting and the moves from it into a base's rows
        self._wake = threading.Event()
        self._control: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._adapter_count = 0
        self._counters = {"prompt_tokens": 0, "generated_tokens": 0, "decode_steps": 0, "prefill_steps": 0}

    # lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="roost-engine", daemon=True)
        self._thread.start()
        # Loading runs in the scheduler thread too: every tensor operation of the engine then comes
        # from one thread. Each thread that runs torch keeps its own OpenMP team, and once a process
        # has more OpenMP threads than cores, GNU OpenMP stops spinning between parallel regions:
        # measured here, a second team made every decode step up to 2x slower.
        try:
            await self._in_scheduler(self._load_configured)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(thread.join)
        stopped = EngineError("the engine stopped before this request finished")
        with self._lock:
            pending = list(self._waiting) + [seq for base in self._bases.values() for seq in base.rows]
            self._waiting.clear()
        self._send([(seq, stopped) for seq in pending])
        for _, future in self._control:
            future.set_exception(stopped)
        self._control.clear()
        self._bases.clear()
        self._routes.clear()

    def _load_configured(self) -> None:
        from roost.models import resolve
        from roost.store import Store

        names = self.requested
        if names is None:
            store = Store(self.settings.home)
            names = [n for n, alias in self.settings.all_aliases().items() if _in_store(store, alias.base)]
            if not names:
                logger.warning("no alias has its base in the store %s: serving nothing (run `roost pull`)",
                               self.settings.home)
        for name in names:
            try:
                resolved = resolve(name, settings=self.settings)
            except StoreError as exc:
                if self.requested is not None:
                    raise
                logger.warning("not serving alias '%s': %s", name, exc)
                continue
            base = self._bases.get(resolved.base) or self._load_base(resolved.base, resolved.base_path)
            adapter = None
            if resolved.adapter_path is not None:
                adapter = self._attach(base, resolved.adapter or name, resolved.adapter_path)
            self._register(name, base, adapter)
            if resolved.base not in self._routes:
                self._register(resolved.base, base, None)
            if adapter is not None and adapter.label not in self._routes:
                self._register(adapter.label, base, adapter)

    def _load_base(self, name: str, path: Path) -> _Base:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = resolve_dtype(self.dtype_name)
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").eval()
        config = model.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        max_context = int(getattr(config, "max_position_embeddings", 2048))
        window = getattr(config, "sliding_window", None)
        if window and window < max_context:
            logger.warning("%s uses sliding-window attention (%d); roost attends to the whole context instead",
                           name, window)
        eos = model.generation_config.eos_token_id
        eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                          *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
        with torch.inference_mode():
            cache = SlotCache(config.num_hidden_layers, self.max_batch_size, kv_heads, head_dim, dtype)
        runner = self._make_runner(name, model)
        base = _Base(
            name=name, path=Path(path), model=model, tokenizer=tokenizer, cache=cache, max_context=max_context,
            vocab_size=model.get_input_embeddings().num_embeddings, eos_ids=eos_ids,
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0],
            created=int(time.time()), runner=runner,
        )
        self._bases[name] = base
        logger.info("loaded base '%s' from %s in %s in %.1f s", name, path, str(dtype).removeprefix("torch."),
                    time.perf_counter() - started)
        return base

    def _make_runner(self, name: str, model: Any) -> Any:
        from roost.backend.llama_runner import LlamaRunner, unsupported_reason

        if self.runner == "transformers":
            return None
        reason = unsupported_reason(model)
        if reason is None:
            return LlamaRunner(model, quantization=self.quantization)
        if self.runner == "lean":
            raise ConfigError(f"base '{name}': the lean runner does not support {reason}; use runner='auto'")
        logger.info("base '%s' runs on the transformers forward: the lean runner does not support %s", name, reason)
        return None

    def _register(self, name: str, base: _Base, adapter: _Adapter | None) -> None:
        info = ModelInfo(name=name, base=base.name, adapter=adapter.label if adapter else None,
                         max_context=base.max_context, created=base.created if adapter is None else int(time.time()))
        if adapter is not None:
            adapter.names.add(name)
        self._routes[name] = _Route(info, base, adapter)

    # adapters -------------------------------------------------------------

    def _attach(self, base: _Base, name: str, path: Path) -> _Adapter:
        """Load the LoRA folder ``path`` onto ``base`` (once per folder); runs between decode steps."""
        from peft import PeftModel

        from roost.backend.llama_runner import UnsupportedAdapter

        path = Path(path).resolve()
        for adapter in base.adapters.values():
            if adapter.path == path:
                return adapter
        key = f"adapter{self._adapter_count}"
        self._adapter_count += 1
        started = time.perf_counter()
        try:
            if base.runner is not None:
                base.runner.lora.add(key, path)
            elif base.peft is None:
                base.peft = PeftModel.from_pretrained(base.model, str(path), adapter_name=key, is_trainable=False)
                base.peft.eval()
            else:
                base.peft.load_adapter(str(path), adapter_name=key, is_trainable=False)
        except UnsupportedAdapter as exc:
            raise InvalidRequest(str(exc)) from None
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise InvalidRequest(f"adapter '{name}' at {path} does not fit base '{base.name}': {exc}") from None
        adapter = _Adapter(key, name, path)
        base.adapters[key] = adapter
        logger.info("loaded adapter '%s' onto '%s' in %.2f s", name, base.name, time.perf_counter() - started)
        return adapter

    def _detach(self, base: _Base, adapter: _Adapter) -> bool:
        """Drop ``adapter`` once no running or waiting request uses it; False means 'not yet'."""
        with self._lock:
            busy = any(s.adapter == adapter.key for s in [*base.rows, *self._waiting] if s.base is base)
        if busy:
            return False
        del base.adapters[adapter.key]
        if base.runner is not None:
            base.runner.lora.remove(adapter.key)
        elif base.adapters:
            base.peft.delete_adapter(adapter.key)
        else:  # PEFT keeps no consistent state with zero adapters: go back to the bare base (and its speed)
            base.model = base.peft.base_model.unload()
            base.peft = None
        logger.info("unloaded adapter %s from '%s'", adapter.path, base.name)
        return True

    def _base_for_adapter(self, folder: Path, config: dict[str, Any], base: str | None) -> _Base:
        if base is not None:
            route = self._routes.get(base)
            if route is None:
                raise UnknownModel(f"The model `{base}` does not exist.")
            return route.base
        declared = str(config.get("base_model_name_or_path") or "")
        lineage_base = _lineage_base(folder)
        for candidate in self._bases.values():
            names = {candidate.name.lower(), str(candidate.path), str(candidate.path.resolve())}
            if lineage_base == candidate.name or declared in names or Path(declared).name.lower() in names:
                return candidate
        if len(self._bases) == 1:
            only = next(iter(self._bases.values()))
            logger.warning("adapter %s names base '%s', which is not loaded; using the only base, '%s'",
                           folder, declared, only.name)
            return only
        loaded = ", ".join(sorted(self._bases)) or "none"
        raise InvalidRequest(f"adapter {folder} is for base '{declared}', which is not loaded (loaded: {loaded}); "
                             "pass base= to choose one")

    async def load_adapter(self, name: str, path: str, base: str | None = None) -> ModelInfo:
        if not name:
            raise InvalidRequest("an adapter needs a non-empty name")
        if name in self._routes:
            raise InvalidRequest(f"a model named '{name}' is already served; unload it first or pick another name")
        folder = Path(path).expanduser()
        config_file = folder / "adapter_config.json"
        if not config_file.is_file():
            raise InvalidRequest(f"{folder} is not a PEFT adapter folder: it has no adapter_config.json")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidRequest(f"{config_file} is unreadable: {exc}") from None
        if config.get("peft_type") != "LORA":
            raise InvalidRequest(f"{folder} holds a {config.get('peft_type')} adapter; only LoRA adapters are served")
        target = self._base_for_adapter(folder, config, base)

        def attach() -> ModelInfo:
            if name in self._routes:
                raise InvalidRequest(f"a model named '{name}' is already served")
            self._register(name, target, self._attach(target, name, folder))
            return self._routes[name].info

        return await self._in_scheduler(attach)

    async def unload_adapter(self, name: str) -> None:
        route = self._routes.get(name)
        if route is None or route.adapter is None:
            raise UnknownModel(f"The model `{name}` does not exist." if route is None else
                               f"`{name}` is a base model, not an adapter; it cannot be unloaded")
        del self._routes[name]  # new requests for it fail from now on
        route.adapter.names.discard(name)
        if not route.adapter.names:
            await self._in_scheduler(lambda: self._detach(route.base, route.adapter))

    async def offload(self, work: Callable[[], T]) -> T:
        """Run ``work`` in the scheduler thread between two steps (see :meth:`start` for why one thread)."""
        return await self._in_scheduler(work)

    async def _in_scheduler(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` in the scheduler thread between two steps (a running forward is never disturbed)."""
        if self._thread is None:
            return await asyncio.to_thread(work)  # no scheduler: nothing runs, nothing to disturb
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._control.append((work, future))
        self._wake.set()
        return await asyncio.wrap_future(future)

    # requests ---------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [route.info for route in self._routes.values()]

    def tokenizer(self, model: str) -> Any:
        return self._route(model).base.tokenizer

    def _route(self, model: str) -> _Route:
        route = self._routes.get(model)
        if route is None:
            raise UnknownModel(f"The model `{model}` does not exist.")
        return route

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Queue ``request`` and return its stream of chunks; errors are raised here, before any chunk."""
        import torch

        route = self._route(request.model)
        base, params, prompt = route.base, request.params, request.prompt_ids
        if self._thread is None:
            raise EngineError("the engine is not running; call start() first")
        if not prompt:
            raise InvalidRequest("the prompt is empty: it must hold at least one token")
        if min(prompt) < 0 or max(prompt) >= base.vocab_size:
            raise InvalidRequest(f"prompt token ids must lie in 0..{base.vocab_size - 1}")
        if params.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be at least 1, got {params.max_tokens}")
        total = len(prompt) + params.max_tokens
        if total > base.max_context:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {base.max_context} tokens. However, you requested "
                f"{total} tokens ({len(prompt)} in the messages, {params.max_tokens} in the completion). "
                "Please reduce the length of the messages or completion."
            )
        generator = torch.Generator()
        generator.manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
        seq = _Sequence(
            request=request, base=base, adapter=route.adapter.key if route.adapter else BASE_ROWS,
            loop=asyncio.get_running_loop(), queue=asyncio.Queue(), generator=generator,
            text=TextStream(base.tokenizer, params.stop),
        )
        with self._lock:
            waiting = sum(1 for s in self._waiting if s.base is base)
            if len(base.rows) + waiting >= self.max_batch_size + self.max_queue:
                raise QueueFull()
            self._waiting.append(seq)
        self._wake.set()
        return _Stream(self, seq)

    def _cancel(self, seq: _Sequence) -> None:
        seq.cancelled = True
        with self._lock:
            if seq in self._waiting:
                self._waiting.remove(seq)
        self._wake.set()

    def stats(self) -> EngineStats:
        with self._lock:
            waiting = len(self._waiting)
            running = sum(len(base.rows) for base in self._bases.values())
        capacity = {name: base.cache.capacity for name, base in self._bases.items()}
        return EngineStats(running=running, waiting=waiting,
                           extra={**self._counters, "slots": self.max_batch_size, "kv_positions": capacity})

    # the scheduler ------------------------------------------------------------

    def _run(self) -> None:
        import torch

        default_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # process-wide in torch: put back when the engine stops
        try:
            while not self._stopping:
                self._run_control()
                busy = False
                for base in list(self._bases.values()):
                    with torch.inference_mode():
                        busy = self._step(base) or busy
                if not busy:
                    self._wake.wait(timeout=1.0)
                    self._wake.clear()
        finally:
            torch.set_num_threads(default_threads)

    def _run_control(self) -> None:
        with self._lock:
            work, self._control = self._control, []
        import torch

        for fn, future in work:
            try:
                with torch.no_grad():
                    result = fn()
            except Exception as exc:  # handed to the caller, who raises it
                future.set_exception(exc)
                continue
            if result is False:  # an unload waiting for its requests to finish
                with self._lock:
                    self._control.append((fn, future))
            else:
                future.set_result(result)

    def _step(self, base: _Base) -> bool:
        """One scheduler step for ``base``: admit, prefill a chunk, decode one token for everyone."""
        for seq in [s for s in base.rows if s.cancelled]:
            self._remove(base, seq)
        self._admit(base)
        if not base.rows:
            base.cache.shrink()
            return False
        out: list[tuple[_Sequence, Any]] = []
        try:
            if len(base.rows) > base.decoding:
                self._prefill(base, out)
            for seq in [s for s in base.rows if s.finished]:
                self._remove(base, seq)
            if base.decoding:
                self._decode(base, out)
        except Exception as exc:
            logger.exception("generation failed on base '%s'", base.name)
            error = EngineError(f"generation failed: {type(exc).__name__}: {exc}")
            out.extend((seq, error) for seq in base.rows)
            for seq in base.rows:
                seq.finished = True
        for seq in [s for s in base.rows if s.finished or s.cancelled]:
            self._remove(base, seq)
        self._send(out)  # after the removal: whoever holds its last chunk sees its slot free in stats()
        return True

    def _admit(self, base: _Base) -> None:
        with self._lock:
            for seq in [s for s in self._waiting if s.base is base]:
                if len(base.rows) >= self.max_batch_size:
                    break
                self._waiting.remove(seq)
                if seq.cancelled:
                    continue
                base.rows.append(seq)
                self._counters["prompt_tokens"] += len(seq.request.prompt_ids)

    def _remove(self, base: _Base, seq: _Sequence) -> None:
        """Free ``seq``'s slot, keeping the decoding rows first and every row in a contiguous slot."""
        with self._lock:
            slot, rows = base.rows.index(seq), base.rows
            if slot < base.decoding:
                last_decoding = base.decoding - 1
                if slot != last_decoding:
                    base.cache.move(last_decoding, slot, rows[last_decoding].cached)
                    rows[slot] = rows[last_decoding]
                slot = last_decoding
                base.decoding -= 1
            last = len(rows) - 1
            if slot != last:
                base.cache.move(last, slot, rows[last].cached)
                rows[slot] = rows[last]
            rows.pop()

    def _prefill(self, base: _Base, out: list[tuple[_Sequence, Any]]) -> None:
        """Feed the next prompt chunk of the rows being prefilled (a contiguous run of slots)."""
        import torch

        lo, batch, width, real = base.decoding, [], 0, 0
        _group_fresh_rows(base.rows, lo)
        for seq in base.rows[lo:]:
            chunk = min(seq.prompt_left, PREFILL_TOKENS)
            padded = (len(batch) + 1) * max(width, chunk)
            # Rows are left-padded to the widest: stop before padding would waste over a quarter of the batch.
            if batch and (padded > PREFILL_TOKENS or real + chunk < 0.75 * padded):
                break
            batch.append((seq, chunk))
            width, real = max(width, chunk), real + chunk
        hi = lo + len(batch)
        kv_len = max(seq.cached + chunk for seq, chunk in batch)
        base.cache.reserve(kv_len, len(base.rows), base.max_context)

        # Left padding puts every row's last prompt token in the last column, so logits_to_keep=1 fits all.
        ids = torch.full((len(batch), width), base.pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        padding = torch.ones((len(batch), width), dtype=torch.bool)
        for i, (seq, chunk) in enumerate(batch):
            ids[i, width - chunk:] = torch.tensor(seq.request.prompt_ids[seq.cached:seq.cached + chunk])
            positions[i, width - chunk:] = torch.arange(seq.cached, seq.cached + chunk)
            padding[i, width - chunk:] = False
        writes = positions.masked_fill(padding, base.cache.scratch)
        # A padding column sees position 0 only: any real key, so that softmax never meets an all-masked row.
        mask = (torch.arange(kv_len)[None, None, :] <= positions[:, :, None])[:, None]
        base.cache.plan(lo, hi, torch.arange(lo, hi), writes, kv_len)
        logits = base.forward(ids, mask, positions, [seq.adapter for seq, _ in batch])
        self._counters["prefill_steps"] += 1

        done = []
        for i, (seq, chunk) in enumerate(batch):
            seq.cached += chunk
            if seq.cached == len(seq.request.prompt_ids):
                done.append(i)
        if not done:
            return
        seqs = [batch[i][0] for i in done]
        tokens = self._sample(base, logits[done], seqs)
        for seq, token in zip(seqs, tokens, strict=True):
            slot = base.rows.index(seq)  # rows[lo:] only move here, so the decoding block stays contiguous
            if slot != base.decoding:
                base.cache.swap(slot, base.decoding, max(seq.cached, base.rows[base.decoding].cached))
                base.rows[slot], base.rows[base.decoding] = base.rows[base.decoding], seq
            base.decoding += 1
            self._accept(seq, token, out)

    def _decode(self, base: _Base, out: list[tuple[_Sequence, Any]]) -> None:
        """One token for every decoding row (slots 0..decoding-1)."""
        import torch

        rows = base.rows[:base.decoding]
        positions = torch.tensor([seq.cached for seq in rows])
        kv_len = int(positions.max()) + 1
        base.cache.reserve(kv_len, len(base.rows), base.max_context)
        ids = torch.tensor([[seq.next_token] for seq in rows])
        mask = (torch.arange(kv_len)[None, :] <= positions[:, None])[:, None, None, :]
        base.cache.plan(0, len(rows), torch.arange(len(rows)), positions, kv_len)
        logits = base.forward(ids, mask, positions[:, None], [seq.adapter for seq in rows])
        self._counters["decode_steps"] += 1
        for seq in rows:
            seq.cached += 1
        for seq, token in zip(rows, self._sample(base, logits, rows), strict=True):
            self._accept(seq, token, out)

    def _sample(self, base: _Base, logits: Any, seqs: list[_Sequence]) -> list[int | None]:
        """Pick one token per row: greedy at temperature 0, else top-p sampling with the request's generator.

        None marks a row whose constraint forbids every token.
        """

        logits = logits.float()
        for i, seq in enumerate(seqs):
            params = seq.request.params
            if seq.request.constraint is not None:
                seq.request.constraint.mask(logits[i])
            # After the constraint, so that min_tokens and ignore_eos win over a grammar that would end here.
            if params.ignore_eos or len(seq.output_ids) < params.min_tokens:
                logits[i, base.eos_ids] = float("-inf")
        best, tokens = logits.max(-1)
        picked: list[int | None] = tokens.tolist()
        sampled = []
        for i, (seq, finite) in enumerate(zip(seqs, best.isfinite().tolist(), strict=True)):
            if not finite:
                picked[i] = None  # its constraint and EOS masking left no token
            elif seq.request.params.temperature > 0:
                sampled.append(i)
        if sampled:
            params = [seqs[i].request.params for i in sampled]
            drawn = sample_rows(logits[sampled], [p.temperature for p in params], [p.top_p for p in params],
                                [seqs[i].generator for i in sampled])
            for i, token in zip(sampled, drawn, strict=True):
                picked[i] = token
        return picked

    def _accept(self, seq: _Sequence, token: int | None, out: list[tuple[_Sequence, Any]]) -> None:
        """Record ``token`` for ``seq``, decide whether it finished, and queue its chunk."""
        if token is None:
            seq.finished = True
            out.append((seq, InvalidRequest("no token is allowed here: the request's constraint forbids them all")))
            return
        params, constraint = seq.request.params, seq.request.constraint
        seq.output_ids.append(token)
        seq.next_token = token
        self._counters["generated_tokens"] += 1
        count = len(seq.output_ids)
        searched_from = len(seq.text.text)
        seq.text.add(token)
        finish = None
        if constraint is not None:
            constraint.advance(token)
            if constraint.is_terminated():
                finish = "stop"
        if token in seq.base.eos_ids and not params.ignore_eos:
            finish = "stop"
        if finish is None and count >= params.min_tokens and seq.text.find_stop(searched_from):
            finish = "stop"
        if finish is None and count >= params.max_tokens:
            finish = "length"
        seq.finished = finish is not None
        chunk = GenerationChunk(text=seq.text.take(final=seq.finished), token_ids=[token],
                                prompt_tokens=len(seq.request.prompt_ids), completion_tokens=count,
                                finish_reason=finish)
        out.append((seq, chunk))

    def _send(self, items: list[tuple[_Sequence, Any]]) -> None:
        """Hand chunks (or errors) to their event loops: one wake-up per loop per step."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, Any]]] = {}
        for seq, item in items:
            if not seq.cancelled:
                by_loop.setdefault(seq.loop, []).append((seq, item))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for seq, _ in batch:
                    seq.cancelled = True


def _group_fresh_rows(rows: list[_Sequence], lo: int) -> None:
    """Order the rows from ``lo`` on that have nothing cached yet so that similar prompt lengths sit together.

    The first such row keeps its place (it waits longest); the others follow it by how close their
    prompt length is to its own, so that a prefill batch formed from ``lo`` on needs little padding.
    A fresh row has no cache content, so moving it is only a change of list position; rows with
    cached positions stay in their slots.
    """
    slots = [i for i in range(lo, len(rows)) if rows[i].cached == 0]
    if len(slots) < 3:
        return
    head, *rest = (rows[i] for i in slots)
    size = len(head.request.prompt_ids)
    rest.sort(key=lambda seq: abs(len(seq.request.prompt_ids) - size))
    for i, seq in zip(slots, [head, *rest], strict=True):
        rows[i] = seq


def _deliver(batch: list[tuple[_Sequence, Any]]) -> None:
    for seq, item in batch:
        seq.queue.put_nowait(item)


NUCLEUS_CANDIDATES = 256  # top-p looks at the most likely tokens first; the whole vocabulary only when they fall short


def sample_rows(logits: Any, temperatures: list[float], top_ps: list[float], generators: list[Any]) -> list[int]:
    """One token per row of ``logits [rows, vocab]``, by temperature and nucleus (top-p) sampling.

    The whole batch is one softmax and one cumulative sum; each row then draws a single
    uniform number from its own generator (so a seeded request samples the same tokens in
    any batch) and takes the first token whose cumulative probability exceeds it. Tokens
    at probability 0 (masked by a constraint) are never drawn.
    """
    import torch

    probs = torch.softmax(logits / torch.tensor(temperatures, dtype=logits.dtype)[:, None], dim=-1)
    nucleus = [i for i, p in enumerate(top_ps) if p < 1.0]
    if nucleus:
        probs[nucleus] = _nucleus(probs[nucleus], torch.tensor([top_ps[i] for i in nucleus], dtype=probs.dtype))
    cdf = probs.cumsum(-1)
    draws = torch.cat([torch.rand(1, generator=g, dtype=cdf.dtype) for g in generators]) * cdf[:, -1]
    tokens = (cdf <= draws[:, None]).sum(-1)
    out = tokens.tolist()
    vocab = probs.shape[-1]
    for i, token in enumerate(out):
        if token >= vocab:  # the draw met the total through float rounding: take the most likely token
            out[i] = int(probs[i].argmax())
    return out


def _nucleus(probs: Any, top_p: Any) -> Any:
    """``probs`` with each row cut to the smallest set of most likely tokens whose mass reaches its ``top_p``."""
    import torch

    k = min(probs.shape[-1], NUCLEUS_CANDIDATES)
    values, order = probs.topk(k, dim=-1)
    short = values.sum(-1) < top_p
    if bool(short.any()):  # the candidates hold less than top_p: those rows sort the whole vocabulary
        values, order = probs.sort(dim=-1, descending=True)
    # The most likely token always stays: its preceding mass is 0.
    keep = (values.cumsum(-1) - values) < top_p[:, None]
    return torch.zeros_like(probs).scatter_(-1, order, values * keep)


def _in_store(store: Any, base: str) -> bool:
    try:
        return store.get("base", base) is not None
    except StoreError:  # a folder path or hub id, which only `roost pull` turns into a store entry
        return False


def _lineage_base(folder: Path) -> str | None:
    """The base an adapter in roost's store records in its roost.json lineage."""
    meta = folder / "roost.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("lineage", {}).get("base")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


