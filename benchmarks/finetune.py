"""roost's SFT and DPO against TRL used directly, side by side in one run.

The peer is TRL as its docs show it: ``SFTTrainer`` / ``DPOTrainer`` given the model folder, the
conversational dataset and ``LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")``, with bf16
and otherwise TRL's defaults. roost runs the same rows (the arithmetic task shipped in
``finetune/data``, about 90 tokens a row under the default model's template), batch size, max length,
LoRA and bf16 through ``finetune.sft`` / ``finetune.dpo``'s trainers. The dataset holds exactly
``steps * batch`` rows, so each side trains on every row once and processes the same tokens.

Each of the four runs is its own subprocess (one after the other, so they never share the CPU), which
reports the training-loop time (``Trainer.train``), the non-padding tokens it trained on, and its peak
resident memory (``ru_maxrss``).

Run: ``.venv/bin/python benchmarks/finetune.py [--steps 20] [--batch 8] [--model DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = Path("/tmp/rh1/bases/smollm2-135m-instruct")
MAX_LENGTH = 256
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}


def write_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """SFT rows (prompt-completion, conversational) and DPO pairs (the wrong answer rejected)."""
    from finetune.tasks import arithmetic

    problems = arithmetic.generate(rows, seed=7)
    sft = folder / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": p["prompt"], "completion": p["completion"]}) + "\n"
                           for p in problems))
    pairs = folder / "dpo.jsonl"
    wrong = [{"role": "assistant", "content": "I think it is {}.\n<answer>{}</answer>"} for _ in problems]
    pairs.write_text("".join(
        json.dumps({"prompt": p["prompt"], "chosen": p["completion"],
                    "rejected": [{**w, "content": w["content"].format(p["answer"] + 3, p["answer"] + 3)}]}) + "\n"
        for p, w in zip(problems, wrong, strict=True)))
    return sft, pairs


def token_counts(model: Path, sft: Path, pairs: Path) -> dict[str, int]:
    """Non-padding tokens per epoch, as both sides tokenize them (the same chat template)."""
    from transformers import AutoTokenizer

    from finetune.data import prepare

    tokenizer = AutoTokenizer.from_pretrained(model)
    sft_rows = prepare(sft, "sft", tokenizer, max_length=MAX_LENGTH).rows
    pair_rows = prepare(pairs, "preference", tokenizer, max_length=MAX_LENGTH).rows
    return {"sft_tokens": sum(len(r["input_ids"]) for r in sft_rows),
            "dpo_tokens": sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
                              for r in pair_rows),
            "pairs": len(pair_rows), "rows": len(sft_rows)}


# workers (each in its own process) ----------------------------------------------------------------


def worker(kind: str, model: Path, data: Path, steps: int, batch: int) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    tempfile.tempdir = str(data.parent)  # run folders go next to the data, removed with it by the driver
    import torch

    torch.manual_seed(0)
    start = time.perf_counter()
    trainer = {"trl-sft": _trl_sft, "roost-sft": _roost_sft, "trl-dpo": _trl_dpo, "roost-dpo": _roost_dpo}[kind](
        model, data, steps, batch)
    setup = time.perf_counter() - start
    output = trainer.train()
    total = time.perf_counter() - start
    return {"kind": kind, "train_s": output.metrics["train_runtime"], "setup_s": setup, "total_s": total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loss": output.metrics.get("train_loss")}


def _trl_common(steps: int, batch: int) -> dict[str, Any]:
    return {"output_dir": tempfile.mkdtemp(prefix="bench-trl-"), "per_device_train_batch_size": batch,
            "max_steps": steps, "max_length": MAX_LENGTH, "bf16": True, "use_cpu": True, "report_to": "none",
            "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}


def _trl_sft(model: Path, data: Path, steps: int, batch: int) -> Any:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    dataset = load_dataset("json", data_files=str(data), split="train")
    return SFTTrainer(model=str(model), args=SFTConfig(**_trl_common(steps, batch)), train_dataset=dataset,
                      peft_config=LoraConfig(**LORA))


def _trl_dpo(model: Path, data: Path, steps: int, batch: int) -> Any:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    dataset = load_dataset("json", data_files=str(data), split="train")
    return DPOTrainer(model=str(model), args=DPOConfig(**_trl_common(steps, batch)), train_dataset=dataset,
                      peft_config=LoraConfig(**LORA))


def _roost_trainer(method: str, model: Path, data: Path, steps: int, batch: int) -> Any:
    from transformers import AutoTokenizer

    from finetune.base import Base
    from finetune.config import DPOConfig, SFTConfig
    from finetune.data import prepare
    from finetune.dpo import build_trainer as dpo_trainer
    from finetune.runs import RunDir
    from finetune.sft import build_trainer as sft_trainer
    from roost.store import Store

    cls, build, kind = (SFTConfig, sft_trainer, "sft") if method == "sft" else (DPOConfig, dpo_trainer, "preference")
    config = cls(base=str(model), data=data, name=f"bench-{method}", max_steps=steps, batch_size=batch,
                 max_length=MAX_LENGTH, dtype="bf16", save_steps=0, progress=False, logging_steps=1)
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = prepare(data, kind, tokenizer, max_length=MAX_LENGTH).rows
    run = RunDir(Store(tempfile.mkdtemp(prefix="bench-roost-")), config.name)
    run.start(config.as_dict(), resume=False, overwrite=True)
    return build(config, Base("bench", model), tokenizer, rows, None, run)


def _roost_sft(model: Path, data: Path, steps: int, batch: int) -> Any:
    return _roost_trainer("sft", model, data, steps, batch)


def _roost_dpo(model: Path, data: Path, steps: int, batch: int) -> Any:
    return _roost_trainer("dpo", model, data, steps, batch)


# driver ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a local model folder (bf16 safetensors)")
    parser.add_argument("--only", choices=["sft", "dpo"], help="run one method only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.data, args.steps, args.batch)))
        return

    methods = [args.only] if args.only else ["sft", "dpo"]
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as folder:
        counts, results = _run_all(args, Path(folder), methods)
    _print_table(args, counts, results, methods)


def _run_all(args: argparse.Namespace, folder: Path, methods: list[str]) -> tuple[dict, dict]:
    sft, pairs = write_data(folder, args.steps * args.batch)
    counts = token_counts(args.model, sft, pairs)
    results: dict[str, dict[str, Any]] = {}
    for method in methods:
        for side in ("trl", "roost"):
            kind = f"{side}-{method}"
            cmd = [sys.executable, __file__, "--worker", kind, "--model", str(args.model), "--steps", str(args.steps),
                   "--batch", str(args.batch), "--data", str(sft if method == "sft" else pairs)]
            print(f"running {kind} ...", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            if done.returncode != 0:
                raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts, results


def _print_table(args: argparse.Namespace, counts: dict, results: dict, methods: list[str]) -> None:
    print(f"\n{args.steps} steps x batch {args.batch}, max length {MAX_LENGTH}, LoRA r16 all-linear, bf16, "
          f"{counts['rows']} rows of {counts['sft_tokens'] / counts['rows']:.0f} tokens on average\n")
    print("| run | train loop s | throughput | peak RSS MB | setup s | final loss |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        for side in ("trl", "roost"):
            r = results[f"{side}-{method}"]
            rate = (f"{counts['sft_tokens'] / r['train_s']:.0f} tokens/s" if method == "sft"
                    else f"{counts['pairs'] / r['train_s']:.2f} pairs/s")
            print(f"| {side} {method} | {r['train_s']:.1f} | {rate} | {r['peak_rss_mb']:.0f} | {r['setup_s']:.1f} | "
                  f"{r['loss']:.4f} |")
    for method in methods:
        ratio = results[f"trl-{method}"]["train_s"] / results[f"roost-{method}"]["train_s"]
        rss = results[f"roost-{method}"]["peak_rss_mb"] / results[f"trl-{method}"]["peak_rss_mb"]
        unit = "tokens/s" if method == "sft" else "pairs/s"
        print(f"\nroost / TRL {method.upper()} {unit}: {ratio:.2f}x (target >= 1.5x); peak RSS ratio {rss:.2f}")


if __name__ == "__main__":
    main()
