"""Compare grammar libraries for constrained decoding, and measure roost's mask overhead.

Two parts:

* ``--compare`` (default): for each installed library among xgrammar, llguidance,
  outlines-core and lm-format-enforcer, on the default model's tokenizer (49152
  tokens): one-time tokenizer preparation, compile time of a typical tool-call
  schema, per-token mask time along random walks (random logits, masked, argmax:
  a uniform pick among the allowed tokens, like a random model at temperature 1),
  and JSON-schema feature coverage (does the schema compile, and do 3 random walks
  under it all end in a document that ``jsonschema`` accepts).
* ``--overhead``: roost's own constraint (roost.backend.constrain) per token,
  mask computation plus application, against one bf16 decode step of the default
  model at batch 1 and 16, and the throughput fraction that predicts at
  concurrency 16.
* ``--engine``: the transformers engine at concurrency 16, waves of requests with
  and without a grammar, alternating, in output tokens per second.

Run: ``.venv/bin/python benchmarks/constrain_overhead.py [--compare] [--overhead] [--engine] [--model DIR]``
(the comparison needs the libraries: ``.venv/bin/pip install outlines-core lm-format-enforcer`` and
``.venv/bin/pip install --no-deps xgrammar apache-tvm-ffi``, skipping the GPU compiler triton that
xgrammar requires on Linux; roost itself keeps only llguidance).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENIZER_DIR = ROOT / "tests" / "assets" / "smollm2-tokenizer"
DEFAULT_MODEL = Path("/tmp/rh1/bases/smollm2-135m-instruct")

# A typical tool list: what an agent framework sends (3 functions, enums, bounds, a nested object).
TOOLS = [
    {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["city", "unit"], "additionalProperties": False}},
    {"name": "search_web", "parameters": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 80},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 20},
            "sites": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
        },
        "required": ["query"], "additionalProperties": False}},
    {"name": "create_event", "parameters": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "when": {"type": "object", "properties": {
                "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                "hour": {"type": "integer", "minimum": 0, "maximum": 23}},
                "required": ["date", "hour"], "additionalProperties": False},
            "attendees": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
        },
        "required": ["title", "when"], "additionalProperties": False}},
]
TOOL_SCHEMA = {"anyOf": [
    {"type": "object", "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
     "required": ["name", "arguments"], "additionalProperties": False} for t in TOOLS]}

_S = {"type": "string", "maxLength": 12}
_INT = {"type": "integer", "minimum": 0, "maximum": 999}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": False, **extra}


# One small schema per feature; strings and numbers bounded so that random walks finish.
FEATURES: dict[str, dict[str, Any]] = {
    "nested object + required": _obj({"a": _obj({"b": _INT, "c": _S})}),
    "optional properties": _obj({"a": _INT, "b": _S}, required=["a"]),
    "enum": _obj({"e": {"enum": ["red", "green", 3, None]}}),
    "const": _obj({"k": {"const": "fixed"}}),
    "integer min/max": _obj({"i": {"type": "integer", "minimum": -5, "maximum": 5}}),
    "exclusiveMinimum": _obj({"i": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9}}),
    "number": _obj({"x": {"type": "number", "minimum": 0, "maximum": 1}}),
    "multipleOf": _obj({"m": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100}}),
    "string min/maxLength": _obj({"s": {"type": "string", "minLength": 2, "maxLength": 5}}),
    "pattern": _obj({"p": {"type": "string", "pattern": "^[a-z]{3}-[0-9]{2}$"}}),
    "format date": _obj({"d": {"type": "string", "format": "date"}}),
    "format email": _obj({"m": {"type": "string", "format": "email", "maxLength": 20}}),
    "array min/maxItems": _obj({"l": {"type": "array", "items": _INT, "minItems": 1, "maxItems": 3}}),
    "prefixItems (tuple)": _obj({"t": {"type": "array", "prefixItems": [_INT, _S], "items": False}}),
    "type list / null": _obj({"n": {"type": ["integer", "null"], "minimum": 0, "maximum": 9}}),
    "anyOf": _obj({"u": {"anyOf": [_INT, {"type": "boolean"}]}}),
    "oneOf": _obj({"u": {"oneOf": [_INT, _obj({"z": _S})]}}),
    "allOf": {"allOf": [_obj({"a": _INT}, additionalProperties=True), {"required": ["a"]}], "type": "object",
              "properties": {"a": _INT}, "additionalProperties": False},
    "$ref / $defs": {"$defs": {"p": _obj({"x": _INT})}, **_obj({"one": {"$ref": "#/$defs/p"}})},
    "recursive $ref": {"$defs": {"node": {"type": "object", "properties": {
        "v": _INT, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/node"},
    "additionalProperties schema": {"type": "object", "additionalProperties": _INT, "maxProperties": 2},
    "any JSON object": {"type": "object"},
}


def load_tokenizer(path: Path = TOKENIZER_DIR) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# ---- one adapter per library: prepare(tokenizer), compile(schema), matcher(grammar), allowed(m), advance(m, t)


class XGrammar:
    name = "xgrammar"

    def prepare(self, tok: Any) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.vocab = len(tok)

    def compile(self, schema: dict[str, Any]) -> Any:
        # A fresh compiler each time: its cache would otherwise hide compile cost on repeats.
        compiler = self.xgr.GrammarCompiler(self.info, cache_enabled=False)
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)

    def matcher(self, grammar: Any) -> Any:
        return [self.xgr.GrammarMatcher(grammar), self.xgr.allocate_token_bitmask(1, self.vocab)]

    def mask(self, m: Any, logits: torch.Tensor) -> None:
        m[0].fill_next_token_bitmask(m[1])
        self.xgr.apply_token_bitmask_inplace(logits.view(1, -1), m[1])

    def advance(self, m: Any, token: int) -> bool:
        return m[0].accept_token(token)

    def finished(self, m: Any) -> bool:
        return m[0].is_terminated()


class LLGuidance:
    name = "llguidance"

    def prepare(self, tok: Any) -> None:
        import llguidance
        import llguidance.hf

        self.llg = llguidance
        self.tok = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok))
        self.vocab = len(tok)

    def compile(self, schema: dict[str, Any]) -> Any:
        grammar = self.llg.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        error = self.llg.LLMatcher.validate_grammar(grammar, self.tok)
        if error:
            raise ValueError(error)
        # Constructing the first matcher builds the lexer: part of the compile cost.
        return grammar, self.llg.LLMatcher(self.tok, grammar, log_level=0)

    def matcher(self, grammar: Any) -> Any:
        return [grammar[1].deep_copy(), torch.full(((self.vocab + 31) // 32,), -1, dtype=torch.int32)]

    def mask(self, m: Any, logits: torch.Tensor) -> None:
        m[0].unsafe_compute_mask_ptr(m[1].data_ptr(), m[1].numel() * 4)
        apply_bitmask(logits, m[1])

    def advance(self, m: Any, token: int) -> bool:
        return m[0].consume_token(token)

    def finished(self, m: Any) -> bool:
        return m[0].is_stopped()


class OutlinesCore:
    name = "outlines-core"

    def prepare(self, tok: Any) -> None:
        import outlines_core

        self.oc = outlines_core
        # Byte-level BPE: map the printable stand-ins back to bytes (GPT-2's table).
        decoder = {v: k for k, v in _bytes_to_unicode().items()}
        vocab: dict[bytes, list[int]] = {}
        specials = set(tok.all_special_ids)
        for token, idx in tok.get_vocab().items():
            if idx in specials:
                continue
            raw = bytes(decoder[c] for c in token) if all(c in decoder for c in token) else token.encode()
            vocab.setdefault(raw, []).append(idx)
        self.vocabulary = outlines_core.Vocabulary(tok.eos_token_id, vocab)
        self.vocab = len(tok)

    def compile(self, schema: dict[str, Any]) -> Any:
        regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema))
        return self.oc.Index(regex, self.vocabulary)

    def matcher(self, grammar: Any) -> Any:
        return [self.oc.Guide(grammar), torch.full(((self.vocab + 31) // 32,), -1, dtype=torch.int32)]

    def mask(self, m: Any, logits: torch.Tensor) -> None:
        m[0].write_mask_into(m[1].data_ptr(), m[1].numel(), 4)
        apply_bitmask(logits, m[1])

    def advance(self, m: Any, token: int) -> bool:
        m[0].advance(token, return_tokens=False)
        return True

    def finished(self, m: Any) -> bool:
        return m[0].is_finished()


class LMFormatEnforcer:
    name = "lm-format-enforcer"

    def prepare(self, tok: Any) -> None:
        # Its transformers integration imports transformers.tokenization_utils.PreTrainedTokenizerBase,
        # gone in transformers 5: build the same tokenizer data by hand.
        from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

        zero = tok.encode("0", add_special_tokens=False)[-1]
        specials = set(tok.all_special_ids)
        regular = []
        for idx in range(len(tok)):
            if idx in specials:
                continue
            after_zero = tok.decode([zero, idx])[1:]
            regular.append((idx, after_zero, len(after_zero) > len(tok.decode([idx]))))
        self.data = TokenEnforcerTokenizerData(regular, lambda ids: tok.decode(ids).rstrip("\ufffd"),
                                               tok.eos_token_id, False, len(tok))
        self.eos = tok.eos_token_id
        self.vocab = len(tok)

    def compile(self, schema: dict[str, Any]) -> Any:
        from lmformatenforcer import JsonSchemaParser

        JsonSchemaParser(schema)  # parses the schema; states are built lazily while decoding
        return schema

    def matcher(self, grammar: Any) -> Any:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        # A TokenEnforcer caches states by token prefix: one per request, as an engine would hold.
        return [TokenEnforcer(self.data, JsonSchemaParser(grammar)), []]

    def mask(self, m: Any, logits: torch.Tensor) -> None:
        allowed = m[0].get_allowed_tokens(m[1]).allowed_tokens
        forbidden = np.ones(self.vocab, dtype=np.bool_)
        forbidden[np.asarray(allowed, dtype=np.int64)] = False
        np.copyto(logits.numpy(), -np.inf, where=forbidden)

    def advance(self, m: Any, token: int) -> bool:
        m[1].append(token)
        return True

    def finished(self, m: Any) -> bool:
        return bool(m[1]) and m[1][-1] == self.eos


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set the logits of tokens whose bit is 0 in a 32-bit-word bitmask to -inf, as roost does (~25 us)."""
    forbidden = np.unpackbits(bitmask.numpy().view(np.uint8) ^ 0xFF, count=logits.shape[-1], bitorder="little")
    ceiling = np.bitwise_or(np.left_shift(forbidden, 31, dtype=np.uint32), np.uint32(0x7F800000))
    array = logits.numpy()
    np.minimum(array, ceiling.view(np.float32), out=array)


ADAPTERS = {
    "xgrammar": (XGrammar, "xgrammar"), "llguidance": (LLGuidance, "llguidance"),
    "outlines-core": (OutlinesCore, "outlines_core"), "lm-format-enforcer": (LMFormatEnforcer, "lmformatenforcer"),
}


def random_walk(lib: Any, grammar: Any, vocab: int, eos: int, gen: torch.Generator,
                max_steps: int = 256) -> tuple[str, list[tuple[float, float]], bool]:
    """Decode under the grammar from random logits; return (text, per-step (wall, CPU) seconds, completed)."""
    m = lib.matcher(grammar)
    tokens: list[int] = []
    times: list[tuple[float, float]] = []
    for _ in range(max_steps):
        logits = torch.randn(vocab, generator=gen)
        start, cpu = time.perf_counter(), time.thread_time()
        lib.mask(m, logits)
        times.append((time.perf_counter() - start, time.thread_time() - cpu))
        token = int(torch.argmax(logits))
        if logits[token] == float("-inf"):
            return lib.decoded(tokens), times, False
        if token == eos:
            return lib.decoded(tokens), times, True
        lib.advance(m, token)
        tokens.append(token)
        if lib.finished(m):
            return lib.decoded(tokens), times, True
    return lib.decoded(tokens), times, False


def compare(args: argparse.Namespace) -> None:
    tok = load_tokenizer()
    vocab, eos = len(tok), tok.eos_token_id
    rows = []
    for name, (cls, module) in ADAPTERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"skip {name}: not installed")
            continue
        lib = cls()
        lib.decoded = lambda ids: tok.decode(ids)
        start = time.perf_counter()
        lib.prepare(tok)
        prepare_s = time.perf_counter() - start

        start = time.perf_counter()
        grammar = lib.compile(TOOL_SCHEMA)
        compile_s = time.perf_counter() - start

        gen = torch.Generator().manual_seed(0)
        times, valid, done = [], 0, 0
        for _ in range(args.walks):
            text, t, completed = random_walk(lib, grammar, vocab, eos, gen)
            times += t[1:]  # the first mask of a fresh matcher is a one-off: reported apart below
            if completed:
                done += 1
                valid += _validates(text, TOOL_SCHEMA)
        first = [random_walk(lib, grammar, vocab, eos, gen, max_steps=1)[1][0][0] for _ in range(3)]

        covered = []
        for feature, schema in FEATURES.items():
            try:
                g = lib.compile(schema)
            except Exception as exc:  # noqa: BLE001 - any failure means "not supported"
                covered.append((feature, f"no ({type(exc).__name__})"))
                continue
            results = []
            for _ in range(3):
                text, _t, completed = random_walk(lib, g, vocab, eos, gen)
                results.append("ok" if completed and _validates(text, schema) else ("bad" if completed else "open"))
            covered.append((feature, "yes" if all(r == "ok" for r in results) else "/".join(results)))
        ms = [cpu * 1e3 for _wall, cpu in times]
        rows.append({
            "library": name, "version": _version(module), "prepare_s": prepare_s, "compile_ms": compile_s * 1e3,
            "mask_ms_mean": statistics.mean(ms), "mask_ms_p50": statistics.median(ms),
            "mask_ms_p99": float(np.percentile(ms, 99)),
            "mask_wall_ms_mean": statistics.mean(wall * 1e3 for wall, _cpu in times),
            "first_mask_ms": statistics.mean(first) * 1e3,
            "walks_valid": f"{valid}/{done} of {args.walks}",
            "features": sum(c == "yes" for _f, c in covered), "coverage": covered,
        })
        print(json.dumps(rows[-1]), flush=True)

    print("\n| library | version | tokenizer prep (s) | tool schema compile (ms) | mask/token CPU mean (ms) | p50 "
          "| p99 | wall mean (ms) | completed walks valid | features enforced |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['library']} | {r['version']} | {r['prepare_s']:.2f} | {r['compile_ms']:.0f} | "
              f"{r['mask_ms_mean']:.3f} | {r['mask_ms_p50']:.3f} | {r['mask_ms_p99']:.3f} | "
              f"{r['mask_wall_ms_mean']:.3f} | "
              f"{r['walks_valid']} | "
              f"{r['features']}/{len(FEATURES)} |")
    print("\n| feature | " + " | ".join(r["library"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, feature in enumerate(FEATURES):
        print(f"| {feature} | " + " | ".join(r["coverage"][i][1] for r in rows) + " |")


def _validates(text: str, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in (module, module.replace("_", "-"), "lm-format-enforcer"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


def overhead(args: argparse.Namespace) -> None:
    """roost's constraint per token vs one bf16 decode step of the default model."""
    from transformers import AutoModelForCausalLM

    from roost.backend.constrain import compile_json_schema, compile_tool_calls

    tok = load_tokenizer(args.model)
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).eval()
    vocab, eos = model.config.vocab_size, tok.eos_token_id

    start = time.perf_counter()
    tools = compile_tool_calls(tok, [{"type": "function", "function": t} for t in TOOLS], "required")
    print(f"compile_tool_calls (3 tools, first grammar for this tokenizer): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    compile_json_schema(tok, FEATURES["nested object + required"])
    print(f"compile_json_schema (small nested schema): {(time.perf_counter() - start) * 1e3:.1f} ms")

    # Per-token constraint cost as the engine pays it: mask (compute + apply to a float32 row) and advance.
    gen = torch.Generator().manual_seed(0)
    costs: dict[str, list[tuple[float, float]]] = {}
    for name, grammar in (("tool calls", tools), ("json_object", compile_json_schema(tok, None))):
        per_token = costs.setdefault(name, [])
        for _ in range(args.walks):
            constraint = grammar.new_constraint()
            for _step in range(128):
                logits = torch.randn(vocab, generator=gen)
                start, cpu = time.perf_counter(), time.thread_time()
                constraint.mask(logits)
                mask_time = (time.perf_counter() - start, time.thread_time() - cpu)
                token = int(torch.argmax(logits))  # the engine samples; not a cost of the constraint
                start, cpu = time.perf_counter(), time.thread_time()
                constraint.advance(token)
                per_token.append((mask_time[0] + time.perf_counter() - start, mask_time[1] + time.thread_time() - cpu))
                if token == eos or constraint.is_terminated():
                    break
        wall = [w * 1e3 for w, _c in per_token]
        cpu_ms = [c * 1e3 for _w, c in per_token]
        print(f"{name}: mask+advance per token ({len(per_token)} tokens): CPU mean {statistics.mean(cpu_ms):.3f} ms, "
              f"p50 {statistics.median(cpu_ms):.3f}, p99 {np.percentile(cpu_ms, 99):.3f}; "
              f"wall mean {statistics.mean(wall):.3f} ms")
    mask_ms = max(statistics.mean(w * 1e3 for w, _c in per_token) for per_token in costs.values())

    print("\n| batch | decode step, HF forward bf16 (ms) | constraint cost per step: rows x mean wall (ms) "
          "| constrained / unconstrained throughput |\n|---|---|---|---|")
    for batch in (1, 16):
        step_ms = _decode_step_ms(model, batch, prompt_len=100)
        added = batch * mask_ms  # the engine masks its rows one after another on the scheduler thread
        print(f"| {batch} | {step_ms:.1f} | {added:.2f} | {step_ms / (step_ms + added):.1%} |")


@torch.inference_mode()
def _decode_step_ms(model: Any, batch: int, prompt_len: int, steps: int = 16) -> float:
    from transformers import DynamicCache

    ids = torch.randint(100, 40000, (batch, prompt_len), generator=torch.Generator().manual_seed(1))
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
        nxt = out.logits[:, -1].float().argmax(-1, keepdim=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


# A long answer with every kind of state (keys, enums, integers, bounded strings) that cannot end before 64 tokens.
LONG_ANSWER = {"type": "object", "properties": {"rows": {"type": "array", "minItems": 40, "items": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                     "unit": {"enum": ["celsius", "fahrenheit"]},
                                     "days": {"type": "integer", "minimum": 1, "maximum": 14}},
    "required": ["city", "unit", "days"]}}}, "required": ["rows"]}


def engine_throughput(args: argparse.Namespace) -> None:
    """Aggregate tokens/s of the transformers engine at concurrency 16, with and without a grammar."""
    import asyncio

    from roost.backend.constrain import compile_json_schema
    from roost.backend.engine import GenerationRequest, SamplingParams
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings
    from roost.prompts import encode, render_chat

    async def run() -> None:
        engine = TransformersEngine(load_settings(env={"ROOST_HOME": str(args.model.parent.parent)}),
                                    models=[args.model.name], max_batch_size=16)
        await engine.start()
        try:
            tok = engine.tokenizer(args.model.name)
            grammar = compile_json_schema(tok, LONG_ANSWER)
            asks = [f"List weather rows for {i} cities." for i in range(args.requests)]
            prompts = [encode(tok, render_chat(tok, [{"role": "user", "content": ask}])) for ask in asks]

            async def one(i: int, constrained: bool) -> int:
                params = SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=i, ignore_eos=not constrained)
                request = GenerationRequest(request_id=f"r{i}", model=args.model.name, prompt_ids=prompts[i],
                                            params=params, constraint=grammar.new_constraint() if constrained else None)
                tokens = 0
                async for chunk in engine.generate(request):
                    tokens = chunk.completion_tokens
                return tokens

            async def wave(constrained: bool) -> float:
                gate = asyncio.Semaphore(args.concurrency)

                async def gated(i: int) -> int:
                    async with gate:
                        return await one(i, constrained)

                start, cpu = time.perf_counter(), time.process_time()
                counts = await asyncio.gather(*(gated(i) for i in range(args.requests)))
                return sum(counts) / (time.perf_counter() - start), sum(counts) / (time.process_time() - cpu)

            await wave(False)  # warm-up
            rates: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(args.rounds):  # alternate, so that load from elsewhere hits both alike
                for constrained in (False, True):
                    rates[constrained].append(await wave(constrained))
            # Tokens per CPU-second of this process moves less than wall time when other work shares the cores.
            for label, index in (("wall", 0), ("CPU", 1)):
                plain = statistics.median(r[index] for r in rates[False])
                constrained = statistics.median(r[index] for r in rates[True])
                print(f"engine, concurrency {args.concurrency}, {args.requests} requests x {args.tokens} tokens, "
                      f"tokens per {label} second: unconstrained {plain:.1f} "
                      f"{[round(r[index], 1) for r in rates[False]]}, constrained {constrained:.1f} "
                      f"{[round(r[index], 1) for r in rates[True]]} -> {constrained / plain:.1%} of unconstrained")
        finally:
            await engine.stop()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="compare the installed grammar libraries")
    parser.add_argument("--overhead", action="store_true", help="roost's constraint vs a decode step")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="default model folder (bf16)")
    parser.add_argument("--walks", type=int, default=10, help="random walks per measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the decode step")
    parser.add_argument("--engine", action="store_true", help="engine throughput with and without a grammar")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32, help="requests per measured wave")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="alternating waves of each kind")
    args = parser.parse_args()
    if not (args.compare or args.overhead or args.engine):
        args.compare = True
    if args.compare:
        compare(args)
    if args.overhead:
        overhead(args)
    if args.engine:
        engine_throughput(args)


if __name__ == "__main__":
    main()
