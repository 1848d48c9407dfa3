"""Does a few minutes of CPU SFT lift the classification program's dev accuracy? (issue: >= 30 points)

    .venv/bin/python benchmarks/classify_quality.py                 # all 220 dev items, 1 epoch on 400 rows
    .venv/bin/python benchmarks/classify_quality.py --epochs 2 --lr 3e-4 --limit 100

The bundled program ``programs.classify`` (a support ticket -> one of 5 labels) runs under DSPy's
JSONAdapter: its ``Literal`` output becomes a JSON schema with an enum in ``response_format``, and the
backend's constrained decoding keeps every answer in the label set. Both runs use that same program,
the same dev items (``--limit``, default all 220) and greedy decoding; only the model name changes:

1. a temporary store gets a copy of the default model (``--model``: another folder) and a backend on it
   (uvicorn in this process, ephemeral port);
2. ``dspy.Evaluate`` scores the program on model ``default``: the untuned baseline;
3. ``finetune.sft`` trains a LoRA adapter on the program's train split, exported as chat rows in the
   exact prompt format the JSONAdapter sends (``programs.common.finetune_rows``, 400 rows of ~340
   tokens, loss on the ~10-token answer only); the backend hot-loads it;
4. ``dspy.Evaluate`` scores the program again on the adapter.

Prints a markdown table and writes ``--out`` (JSON). Nothing is written to your store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="roost-bench-dspy-"))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADAPTER = "classify-sft"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a local model folder (default: the default model in your store)")
    parser.add_argument("--limit", type=int, help="dev items scored (default: all 220)")
    parser.add_argument("--train-rows", type=int, help="train rows used (default: all 400)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=16, help="concurrent DSPy calls (the backend batches them)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "classify_quality.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from finetune_quality import default_model

    model = args.model or default_model()

    import finetune
    from programs import classify
    from programs.common import finetune_rows
    from roost.config import load_settings
    from roost.models import pull

    with tempfile.TemporaryDirectory(prefix="bench-classify-") as home:
        settings = load_settings(env={"ROOST_HOME": home})
        pull(str(model), name=settings.alias("default").base, settings=settings, progress=False)
        rows = finetune_rows(classify, "train", limit=args.train_rows)
        data = Path(home) / "classify.train.chat.jsonl"
        data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")

        with serve(settings) as served:
            before = evaluate(classify, "default", served, args.limit, args.threads)
            report("untuned", before)

            start = time.perf_counter()
            result = finetune.sft(data=data, name=ADAPTER, epochs=args.epochs, lr=args.lr, lora_r=args.lora_r,
                                  lora_alpha=2 * args.lora_r, batch_size=args.batch_size, max_length=512,
                                  save_steps=0, progress=False, settings=served)
            train_minutes = (time.perf_counter() - start) / 60
            if not result.hot_loaded:
                raise SystemExit(f"the backend at {served.backend.base_url} did not hot-load '{ADAPTER}'")
            print(f"SFT: {len(rows)} rows, {args.epochs:g} epoch(s), {train_minutes:.1f} min, train loss "
                  f"{result.metrics.get('train_loss', float('nan')):.4f}", file=sys.stderr, flush=True)

            after = evaluate(classify, ADAPTER, served, args.limit, args.threads)
            report(ADAPTER, after)

    summary = {
        "model": str(model), "program": "programs.classify", "adapter": "json (constrained to the label set)",
        "dev_items": before["items"], "labels": len(classify.LABELS), "train_rows": len(rows),
        "epochs": args.epochs, "lr": args.lr, "lora_r": args.lora_r, "batch_size": args.batch_size,
        "train_minutes": round(train_minutes, 2), "train_loss": result.metrics.get("train_loss"),
        "before": before, "after": after,
        "lift_points": round(100 * (after["accuracy"] - before["accuracy"]), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(table(summary))


@contextmanager
def serve(settings: Any) -> Iterator[Any]:
    """A roost backend on ``settings``' store, in this process on an ephemeral port; yields settings whose
    ROOST_URL points at it, so that DSPy's LM and finetune's hot-load find it."""
    import uvicorn

    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings

    # 16 rows per decode step: dspy.Evaluate's 16 threads are batched together.
    engine = TransformersEngine(settings, ["default"], max_batch_size=16)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the backend failed to start; see the log above")
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield load_settings(env={"ROOST_HOME": str(settings.home), "ROOST_URL": f"http://127.0.0.1:{port}"})
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def evaluate(program: Any, model: str, settings: Any, limit: int | None, threads: int) -> dict[str, Any]:
    """The program's dev accuracy on ``model`` with dspy.Evaluate; parse failures and other errors counted."""
    import dspy
    from dspy.utils.callback import BaseCallback

    from roost.clients import dspy_lm

    failures: Counter[str] = Counter()
    lock = threading.Lock()

    class CountParseErrors(BaseCallback):
        def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            if exception is not None:
                with lock:
                    failures["parse"] += 1

    examples = program.TASK.examples("dev", limit=limit)
    lm = dspy_lm(model, caller="benchmarks.classify_quality", temperature=0.0, max_tokens=program.TASK.max_tokens,
                 settings=settings)
    evaluator = dspy.Evaluate(devset=examples, metric=program.metric, num_threads=threads, display_progress=False,
                              max_errors=len(examples) + 1, failure_score=0.0, provide_traceback=False)
    start = time.perf_counter()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter(), callbacks=[CountParseErrors()]):
        result = evaluator(program.Classify())
    seconds = time.perf_counter() - start
    predicted = Counter(str(getattr(p, "label", None)) for _, p, _ in result.results)
    errors = sum(1 for _, p, _ in result.results if getattr(p, "label", None) is None)
    return {"model": model, "items": len(examples), "accuracy": round(result.score / 100, 4),
            "parse_failures": failures["parse"], "failed_items": errors, "predicted": dict(predicted),
            "seconds": round(seconds, 1)}


def report(name: str, row: dict[str, Any]) -> None:
    print(f"{name}: accuracy {row['accuracy']:.1%} on {row['items']} items, parse failures {row['parse_failures']}, "
          f"failed items {row['failed_items']}, {row['seconds']} s; predicted {row['predicted']}",
          file=sys.stderr, flush=True)


def table(s: dict[str, Any]) -> str:
    before, after = s["before"], s["after"]
    return "\n".join([
        f"`programs.classify` dev set ({s['dev_items']} items, {s['labels']} labels), DSPy JSONAdapter constrained "
        f"to the label set, greedy; SFT: LoRA r{s['lora_r']}, {s['train_rows']} train rows, {s['epochs']:g} "
        f"epoch(s), lr {s['lr']:g}, batch {s['batch_size']}", "",
        "| model | accuracy | parse failures | failed items | eval s |", "|---|---|---|---|---|",
        f"| untuned (`default`) | {before['accuracy']:.1%} | {before['parse_failures']} | {before['failed_items']} | "
        f"{before['seconds']} |",
        f"| SFT adapter (`{ADAPTER}`) | {after['accuracy']:.1%} | {after['parse_failures']} | "
        f"{after['failed_items']} | {after['seconds']} |", "",
        f"Lift: **{s['lift_points']:+.1f} points**, after {s['train_minutes']:.1f} min of SFT on the CPU "
        f"(train loss {s['train_loss']:.4f}).",
    ])


if __name__ == "__main__":
    main()
