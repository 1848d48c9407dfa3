"""Decode speed of the transformers engine in process (no HTTP), at several concurrencies.

Each request is a chat prompt "Write a short story about a robot named R{i} who
learns to paint." forced to exactly --tokens output tokens (ignore_eos), greedy.
Reports aggregate output tokens/s, per-request decode tokens/s (after the first
token) and time to first token. The HTTP comparison with `transformers serve`
lives in benchmarks/serve.py; this isolates the engine.

    ROOST_HOME=/tmp/rh1 .venv/bin/python benchmarks/engine_decode.py --concurrency 1 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from roost.backend.engine import GenerationRequest, SamplingParams
from roost.backend.transformers_engine import TransformersEngine
from roost.config import load_settings
from roost.models import resolve
from roost.prompts import encode, render_chat


async def one(engine: TransformersEngine, model: str, prompt: list[int], tokens: int, rid: str) -> dict[str, float]:
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    first = last = start
    count = 0
    async for chunk in engine.generate(GenerationRequest(rid, model, prompt, params)):
        last = time.perf_counter()
        if count == 0:
            first = last
        count = chunk.completion_tokens
    return {"tokens": count, "ttft": first - start, "decode_tps": (count - 1) / max(last - first, 1e-9)}


def transformers_loop(folder: str, batch: int, tokens: int, dtype: str) -> float:
    """Output tok/s of a plain transformers greedy loop (DynamicCache, eager, same-length prompts): the reference."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from roost.backend.transformers_engine import resolve_dtype

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=resolve_dtype(dtype)).eval()
    with torch.inference_mode():
        ids = torch.randint(100, 10000, (batch, 50))
        cache = DynamicCache(config=model.config)
        token = model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(tokens - 1):
            logits = model(input_ids=token, cache=cache, use_cache=True).logits
            token = logits[:, -1:].argmax(-1)
    return batch * (tokens - 1) / (time.perf_counter() - start)


async def run(args: argparse.Namespace) -> None:
    settings = load_settings()
    engine = TransformersEngine(settings, [args.model], dtype=args.dtype, max_batch_size=max(args.concurrency),
                                runner=args.runner, threads=args.threads, quantization=args.quantization)
    await engine.start()
    tok = engine.tokenizer(args.model)
    prompts = [encode(tok, render_chat(tok, [{"role": "user", "content":
               f"Write a short story about a robot named R{i} who learns to paint."}])) for i in range(64)]
    await one(engine, args.model, prompts[0], 8, "warmup")
    print(f"model={args.model} runner={engine.runner} dtype={args.dtype} quantization={args.quantization} "
          f"tokens={args.tokens} "
          f"threads={args.threads or 'default'} load={os.getloadavg()[0]:.1f}")
    print("| concurrency | output tok/s (aggregate) | decode tok/s per request | TTFT p50 ms | TTFT max ms | cpu s |")
    print("|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        cpu, wall = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(one(engine, args.model, prompts[i % len(prompts)], args.tokens, f"r{i}")
                                         for i in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total = sum(r["tokens"] for r in results)
        ttfts = [r["ttft"] * 1000 for r in results]
        print(f"| {concurrency} | {total / wall:.1f} | {statistics.mean(r['decode_tps'] for r in results):.1f} "
              f"| {statistics.median(ttfts):.0f} | {max(ttfts):.0f} | {cpu:.1f} |")
    await engine.stop()
    folder = str(resolve(args.model, settings=settings).base_path)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.reference:
        for concurrency in args.concurrency:
            rate = transformers_loop(folder, concurrency, args.tokens, args.dtype)
            print(f"| transformers greedy loop, batch {concurrency} | {rate:.1f} | | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--runner", default="auto", choices=["auto", "lean", "transformers"])
    parser.add_argument("--quantization", default="auto", choices=["auto", "none"],
                        help="int4 decode kernels for 4-bit bases (auto) or the stored dtype (none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--reference", action="store_true", help="also time a plain transformers decode loop")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
