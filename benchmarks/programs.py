"""Each DSPy program's dev-set score on a roost model, and how often its output fails to parse.

    .venv/bin/python benchmarks/programs.py --limit 20                  # all programs, both adapters
    .venv/bin/python benchmarks/programs.py --programs classify,ner --adapters json --limit 200

The baseline that fine-tuning has to beat: every program in programs/ runs on its
dev split (the first ``--limit`` items) against ``--model`` (default: the embedded
SmolLM2-135M-Instruct), greedy, through a roost backend. Without ``--url`` the
backend runs in this process on an ephemeral port and stops at the end.

Two adapters, the two ways DSPy talks to a model:

* ``json``: ``dspy.JSONAdapter``. The signature's output schema goes to the backend
  as ``response_format``; a backend that constrains decoding makes every reply parse.
* ``chat``: DSPy's default ``ChatAdapter``: free text with ``[[ ## field ## ]]``
  markers and, when that does not parse, a silent second call through the JSON
  adapter. Each such *fallback* is counted (a ChatAdapter parse error seen by a
  DSPy callback), as is every item that still failed to parse (*parse failures*).

A failed item scores 0. Then, with ``--frameworks``, the same question per framework:
the classification dev items asked through LangChain, AutoGen and CrewAI's own
structured-output calls (``schema``: a JSON schema in ``response_format``) and as a
plain prompt whose reply is parsed as JSON (``prompt``), counting replies that are
not a valid ``{"label": ...}``. Results go to ``--out`` as JSON and to stdout as tables.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="roost-bench-dspy-"))

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROGRAMS = ("classify", "ner", "qa", "translate", "summarize", "paraphrase", "transliterate", "text2code")
METRICS = {"classify": "accuracy", "ner": "token F1", "qa": "SQuAD F1", "translate": "chrF", "summarize": "token F1",
           "paraphrase": "chrF, 0 for a copy", "transliterate": "char accuracy", "text2code": "pass@1"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="roost model name or alias (default: %(default)s)")
    parser.add_argument("--programs", default=",".join(PROGRAMS), help="comma-separated programs")
    parser.add_argument("--adapters", default="json,chat", help="comma-separated: json, chat")
    parser.add_argument("--limit", type=int, default=20, help="dev items per program (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent requests (the backend batches them)")
    parser.add_argument("--frameworks", default="langchain,autogen,crewai",
                        help="frameworks for the structured-output table ('' to skip; default: %(default)s)")
    parser.add_argument("--url", help="use the backend at this URL instead of starting one in this process")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "programs.json")
    return parser.parse_args()


class ParseCounter:
    """A DSPy callback counting adapter parse errors by adapter class (thread-safe)."""

    def __init__(self) -> None:
        from dspy.utils.callback import BaseCallback

        counter = self

        class _Callback(BaseCallback):
            def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                with counter.lock:
                    counter.adapters[call_id] = type(instance).__name__

            def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: BaseException | None = None):
                with counter.lock:
                    name = counter.adapters.pop(call_id, "?")
                    if exception is not None:
                        counter.errors[name] += 1

        self.lock = threading.Lock()
        self.adapters: dict[str, str] = {}
        self.errors: Counter[str] = Counter()
        self.callback = _Callback()


def evaluate(name: str, adapter_name: str, lm: Any, limit: int, threads: int) -> dict[str, Any]:
    """Score program ``name`` on ``limit`` dev items with one adapter; count fallbacks and failures."""
    import dspy

    from programs.common import module_class

    program = importlib.import_module(f"programs.{name}")
    examples = program.TASK.examples("dev", limit=limit)
    adapter = dspy.JSONAdapter() if adapter_name == "json" else dspy.ChatAdapter()
    counter = ParseCounter()
    lm = lm.copy(max_tokens=program.TASK.max_tokens)  # each program's reply budget (programs.common.Task)
    failures: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []

    def one(example: dspy.Example) -> float:
        with dspy.context(lm=lm, adapter=adapter, callbacks=[counter.callback]):
            try:
                prediction = module_class(program)()(**example.inputs())
            except Exception as exc:  # noqa: BLE001 - every failure is counted and scored 0
                with counter.lock:
                    failures[type(exc).__name__] += 1
                return 0.0
        score = float(program.metric(example, prediction))
        with counter.lock:
            if len(samples) < 3:
                samples.append({"input": dict(example.inputs()), "output": dict(prediction.items()), "score": score})
        return score

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        scores = list(pool.map(one, examples))
    seconds = time.perf_counter() - start
    return {
        "program": name, "adapter": adapter_name, "items": len(examples),
        "score": sum(scores) / len(scores) if scores else 0.0,
        "fallbacks": counter.errors.get("ChatAdapter", 0) if adapter_name == "chat" else 0,
        "parse_failures": failures.get("AdapterParseError", 0),
        "other_errors": sum(v for k, v in failures.items() if k != "AdapterParseError"),
        "error_kinds": dict(failures), "seconds": round(seconds, 1), "samples": samples,
    }


LABEL_PROMPT = ("Classify the customer-support ticket. Reply with JSON only, like {\"label\": \"billing\"}, where "
                "label is one of: billing, shipping, technical, account, returns.")


@functools.cache
def ticket_model() -> type:
    """The pydantic model every framework is asked to fill: ``{"label": <one of the five>}`` (one class, cached,
    so that a framework's parsed reply is an instance of the class the check uses)."""
    from typing import Literal

    from pydantic import BaseModel

    class Ticket(BaseModel):
        label: Literal["billing", "shipping", "technical", "account", "returns"]

    return Ticket


def framework_call(framework: str, mode: str, settings: Any, model: str) -> Any:
    """A function ``text -> reply text or a parsed Ticket`` through ``framework``'s own client."""
    import asyncio

    from roost import clients

    ticket = ticket_model()
    options = {"caller": f"benchmarks.programs/{framework}-{mode}", "temperature": 0.0, "max_tokens": 24,
               "settings": settings}
    if framework == "langchain":
        chat = clients.langchain_chat(model, **options)
        runnable = chat.with_structured_output(ticket, method="json_schema") if mode == "schema" else chat

        def call(text: str) -> Any:
            reply = runnable.invoke([("system", LABEL_PROMPT), ("user", text)])
            return reply if mode == "schema" else reply.content
        return call
    if framework == "autogen":
        from autogen_core.models import SystemMessage, UserMessage

        def call(text: str) -> Any:
            async def ask() -> Any:
                client = clients.autogen_client(model, **options)
                try:
                    extra = {"json_output": ticket} if mode == "schema" else {}
                    result = await client.create([SystemMessage(content=LABEL_PROMPT),
                                                  UserMessage(content=text, source="user")], **extra)
                finally:
                    await client.close()
                return result.content
            return asyncio.run(ask())
        return call
    if framework == "crewai":
        llm = clients.crewai_llm(model, **options)

        def call(text: str) -> Any:
            messages = [{"role": "system", "content": LABEL_PROMPT}, {"role": "user", "content": text}]
            return llm.call(messages, response_model=ticket if mode == "schema" else None)
        return call
    raise SystemExit(f"unknown framework {framework!r}; use langchain, autogen, crewai")


def evaluate_framework(framework: str, mode: str, settings: Any, model: str, limit: int) -> dict[str, Any]:
    """Parse failures and accuracy of ``framework`` on the classification dev items, schema or plain prompt."""
    from programs.classify import TASK

    ticket = ticket_model()
    call = framework_call(framework, mode, settings, model)
    failures = correct = 0
    rows = TASK.rows("dev", limit=limit)
    start = time.perf_counter()
    for row in rows:
        try:
            reply = call(row["text"])
            parsed = reply if isinstance(reply, ticket) else ticket.model_validate_json(str(reply).strip())
        except Exception:  # noqa: BLE001 - a reply that is not a valid Ticket, however the framework reports it
            failures += 1
            continue
        correct += parsed.label == row["label"]
    return {"framework": framework, "mode": mode, "items": len(rows), "parse_failures": failures,
            "accuracy": correct / len(rows) if rows else 0.0, "seconds": round(time.perf_counter() - start, 1)}


def serve_in_process(model: str):
    """Start a backend for ``model`` on an ephemeral port in a thread; return (settings, stop())."""
    import asyncio

    import uvicorn

    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings

    settings = load_settings()
    engine = TransformersEngine(settings, [model])
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the backend failed to start; see the log above")
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=60)

    env = {k: v for k, v in os.environ.items() if k.startswith("ROOST_")}
    return load_settings(env={**env, "ROOST_URL": url}), stop


def table(rows: list[dict[str, Any]], model: str, limit: int) -> str:
    lines = [f"Dev-set scores on `{model}` (first {limit} dev items per program, greedy):", "",
             "| program | metric | adapter | score | fallbacks | parse failures | other errors | s/item |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['program']} | {METRICS[r['program']]} | {r['adapter']} | {r['score']:.3f} | "
                     f"{r['fallbacks']} | {r['parse_failures']} | {r['other_errors']} | "
                     f"{r['seconds'] / max(r['items'], 1):.1f} |")
    return "\n".join(lines)


def framework_table(rows: list[dict[str, Any]]) -> str:
    lines = ["Structured output per framework (classification dev items, `schema`: JSON schema in response_format; "
             "`prompt`: JSON asked for in the prompt only):", "",
             "| framework | mode | items | parse failures | accuracy |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['framework']} | {r['mode']} | {r['items']} | {r['parse_failures']} | "
                     f"{r['accuracy']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    from roost.clients import dspy_lm
    from roost.config import load_settings

    if args.url:
        env = {k: v for k, v in os.environ.items() if k.startswith("ROOST_")}
        settings, stop = load_settings(env={**env, "ROOST_URL": args.url}), (lambda: None)
    else:
        settings, stop = serve_in_process(args.model)
    try:
        lm = dspy_lm(args.model, caller="benchmarks.programs", temperature=0.0, settings=settings)
        rows = []
        for name in filter(None, args.programs.split(",")):
            for adapter in args.adapters.split(","):
                row = evaluate(name.strip(), adapter.strip(), lm, args.limit, args.threads)
                print(f"{name:14} {adapter:5} score {row['score']:.3f}  fallbacks {row['fallbacks']}  "
                      f"parse failures {row['parse_failures']}  errors {row['other_errors']}  {row['seconds']}s",
                      file=sys.stderr, flush=True)
                rows.append(row)
        framework_rows = []
        for framework in filter(None, args.frameworks.split(",")):
            for mode in ("schema", "prompt"):
                row = evaluate_framework(framework.strip(), mode, settings, args.model, args.limit)
                print(f"{framework:10} {mode:6} parse failures {row['parse_failures']}/{row['items']}  "
                      f"accuracy {row['accuracy']:.3f}  {row['seconds']}s", file=sys.stderr, flush=True)
                framework_rows.append(row)
    finally:
        stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "limit": args.limit, "rows": rows,
                                    "frameworks": framework_rows}, indent=2, ensure_ascii=False, default=str))
    print(table(rows, args.model, args.limit))
    if framework_rows:
        print()
        print(framework_table(framework_rows))


if __name__ == "__main__":
    main()
