"""What each framework adds to one LLM call, over a raw HTTP request to the same backend.

    .venv/bin/python benchmarks/frameworks.py                 # 100 calls per way
    .venv/bin/python benchmarks/frameworks.py --calls 300 --out benchmarks/results/frameworks.json

The backend is roost's real HTTP app (validation, prompt rendering, tracing,
metrics) over the test-double engine of tests/fakes.py, which answers at once
(it echoes 4 prompt tokens), so the time left is the HTTP stack plus the client.
It runs under uvicorn in this process on an ephemeral port. Each way makes the
same chat call (one user message, ``max_tokens=4``) ``--calls`` times, the ways
interleaved call by call, after a few warm-up calls; the table gives the median
and p90 latency and the median's overhead over the raw call. Every call carries its own caller
tag, and the trace store is checked to hold exactly the calls that were made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="roost-bench-dspy-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "echo"
MESSAGES = [{"role": "user", "content": "Say hello to the team."}]
MAX_TOKENS = 4
WARMUP = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="timed calls per way (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "frameworks.json")
    return parser.parse_args()


# the ways to make one call --------------------------------------------------------------------


def raw_http(url: str) -> Callable[[], Any]:
    import httpx

    client = httpx.Client(base_url=url, timeout=30)
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    return lambda: client.post("/v1/chat/completions", json=body, headers={"X-Roost-Caller": "bench/raw"}).json()


def openai_sdk(url: str) -> Callable[[], Any]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="roost", default_headers={"X-Roost-Caller": "bench/openai"})
    return lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)


def langchain(url: str) -> Callable[[], Any]:
    from roost.clients import langchain_chat

    chat = langchain_chat(MODEL, caller="bench/langchain", max_tokens=MAX_TOKENS)
    return lambda: chat.invoke(MESSAGES)


def langgraph(url: str, checkpoints: Path | None = None) -> Callable[[], Any]:
    """A one-node graph around the chat model; with ``checkpoints``, saved to SQLite as the roost graphs are."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import START, MessagesState, StateGraph

    from roost.clients import langchain_chat

    tag = "bench/langgraph-sqlite" if checkpoints else "bench/langgraph"
    chat = langchain_chat(MODEL, caller=tag, max_tokens=MAX_TOKENS)
    graph = StateGraph(MessagesState)
    graph.add_node("model", lambda state: {"messages": [chat.invoke(state["messages"])]})
    graph.add_edge(START, "model")
    saver = SqliteSaver(sqlite3.connect(str(checkpoints), check_same_thread=False)) if checkpoints else None
    compiled = graph.compile(checkpointer=saver)
    counter = iter(range(10**9))

    def call() -> Any:
        config = {"configurable": {"thread_id": f"t{next(counter)}"}} if saver else None
        return compiled.invoke({"messages": MESSAGES}, config)

    return call


def langgraph_sqlite(url: str) -> Callable[[], Any]:
    return langgraph(url, checkpoints=Path(tempfile.mkdtemp(prefix="roost-bench-ckpt-")) / "checkpoints.db")


def dspy_lm(url: str) -> Callable[[], Any]:
    from roost.clients import dspy_lm as make_lm

    lm = make_lm(MODEL, caller="bench/dspy", max_tokens=MAX_TOKENS)
    return lambda: lm(messages=MESSAGES)


def autogen(url: str) -> Callable[[], Any]:
    from autogen_core.models import UserMessage

    from roost.clients import autogen_client

    client = autogen_client(MODEL, caller="bench/autogen", max_tokens=MAX_TOKENS)
    loop = asyncio.new_event_loop()
    message = [UserMessage(content=MESSAGES[0]["content"], source="user")]
    return lambda: loop.run_until_complete(client.create(message))


def autogen_agent(url: str) -> Callable[[], Any]:
    from autogen_agentchat.agents import AssistantAgent

    from roost.clients import autogen_client

    client = autogen_client(MODEL, caller="bench/autogen-agent", max_tokens=MAX_TOKENS)
    loop = asyncio.new_event_loop()
    counter = iter(range(10**9))

    def call() -> Any:
        # A fresh agent per call: an AssistantAgent keeps its history, which would grow the prompt.
        agent = AssistantAgent(f"bench{next(counter)}", client)
        return loop.run_until_complete(agent.run(task=MESSAGES[0]["content"]))

    return call


def crewai(url: str) -> Callable[[], Any]:
    from roost.clients import crewai_llm

    llm = crewai_llm(MODEL, caller="bench/crewai", max_tokens=MAX_TOKENS)
    return lambda: llm.call(MESSAGES)


WAYS: dict[str, tuple[str, Callable[[str], Callable[[], Any]]]] = {
    "raw HTTP (httpx)": ("bench/raw", raw_http),
    "openai SDK": ("bench/openai", openai_sdk),
    "LangChain ChatOpenAI.invoke": ("bench/langchain", langchain),
    "LangGraph, 1-node graph": ("bench/langgraph", langgraph),
    "LangGraph + SqliteSaver": ("bench/langgraph-sqlite", langgraph_sqlite),
    "DSPy LM (LiteLLM)": ("bench/dspy", dspy_lm),
    "AutoGen client.create": ("bench/autogen", autogen),
    "AutoGen AssistantAgent.run": ("bench/autogen-agent", autogen_agent),
    "CrewAI LLM.call": ("bench/crewai", crewai),
}


# measuring ---------------------------------------------------------------------------------------


def measure(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call for each way, the ways interleaved: round ``i`` calls every way once.

    Interleaving makes a change in machine load (other processes on 2 shared cores)
    hit every way alike instead of whichever ran during it.
    """
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    args = parse_args()
    import logging

    # Four tokens is the point (no decode time), not a truncation worth a warning per call.
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    from transformers import AutoTokenizer

    from roost.backend.app import create_app
    from roost.backend.traces import TraceStore
    from roost.config import load_settings
    from roost.store import Store
    from tests.fakes import EchoEngine
    from tests.servers import uvicorn_thread

    work = Path(tempfile.mkdtemp(prefix="roost-bench-frameworks-"))
    os.environ["ROOST_HOME"] = str(work / "home")
    settings = load_settings()
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "tests" / "assets" / "smollm2-tokenizer")
    traces = TraceStore(Store(settings.home).traces_db)
    app = create_app(EchoEngine(tokenizer, models=(MODEL,), max_running=4), settings, traces=traces)

    with uvicorn_thread(app) as url:
        os.environ["ROOST_URL"] = url
        times = measure({name: make(url) for name, (_, make) in WAYS.items()}, args.calls)
    traces.flush()
    rows = []
    for name, (caller, _) in WAYS.items():
        recorded = len(traces.list(caller=caller, limit=10**6))
        if recorded != args.calls + WARMUP:
            raise SystemExit(f"{name}: the trace store holds {recorded} calls, not {args.calls + WARMUP}")
        rows.append({"way": name, "median_ms": statistics.median(times[name]), "p90_ms": percentile(times[name], 0.9),
                     "calls": args.calls})
    base = rows[0]["median_ms"]
    for row in rows:
        row["overhead_ms"] = row["median_ms"] - base

    print(f"\n{args.calls} calls per way, interleaved, max_tokens={MAX_TOKENS}, echo engine, uvicorn on loopback\n")
    print("| way | median ms | p90 ms | overhead over raw HTTP, ms |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['way']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['overhead_ms']:+.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calls": args.calls, "max_tokens": MAX_TOKENS, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
