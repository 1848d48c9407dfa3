"""Dev accuracy on the arithmetic task: the ``sft-then-grpo`` recipe (base, after SFT, after GRPO), then DPO.

The task (``finetune/tasks/arithmetic.py``) asks for one whole number per word problem; an answer counts
when its ``<answer>N</answer>`` is right, greedy, on the first ``--dev`` problems of the shipped dev set
(never seen in training).

DPO runs on top of the SFT adapter, on preference pairs built from the training problems the way
on-policy preference data is: the SFT model answers every training problem greedily; where it is wrong,
its own answer is the rejected one and the worked answer the chosen one. So "before" for DPO is the
SFT adapter's accuracy, and DPO is scored on the same dev problems.

The store is a temporary one holding a copy of ``--model`` (default: the default model in your store),
so nothing is written to yours.

Run: ``.venv/bin/python benchmarks/finetune_quality.py [--sft-steps 50] [--grpo-steps 10] [--dev 100]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_model() -> Path:
    """The folder of the base the ``default`` alias names in the user's store; exits saying to pull it if absent."""
    from roost.config import load_settings
    from roost.store import Store

    settings = load_settings()
    name = settings.alias("default").base
    entry = Store(settings.home).get("base", name)
    if entry is None:
        sys.exit(f"error: the default model '{name}' is not in the store at {settings.home}: run `roost pull` "
                 "first, or pass --model FOLDER")
    return entry.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a local model folder (default: the default model in your store)")
    parser.add_argument("--sft-steps", type=int, default=50, help="SFT steps (0: one epoch of 400 rows)")
    parser.add_argument("--grpo-steps", type=int, default=10)
    parser.add_argument("--grpo-lr", type=float, default=2e-5)
    parser.add_argument("--dpo-lr", type=float, default=5e-5)
    parser.add_argument("--dpo-epochs", type=float, default=1.0)
    parser.add_argument("--dpo-beta", type=float, default=0.1)
    parser.add_argument("--pairs-from", type=int, default=400, help="training problems the SFT model answers for DPO")
    parser.add_argument("--no-dpo", action="store_true", help="skip the DPO stage")
    parser.add_argument("--dev", type=int, default=100, help="dev problems scored at each stage")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    model = args.model or default_model()

    import finetune
    from finetune.base import resolve_base
    from finetune.recipes import dev_accuracy, load_dev
    from roost.config import load_settings
    from roost.models import pull

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as home:
        settings = load_settings(env={"ROOST_HOME": home, "ROOST_URL": "http://127.0.0.1:9"})
        pull(str(model), name="base", settings=settings, progress=False)
        start = time.perf_counter()
        report = finetune.sft_then_grpo(base="base", name="arith", sft_steps=args.sft_steps,
                                        grpo_steps=args.grpo_steps, grpo_lr=args.grpo_lr, dev_rows=args.dev,
                                        batch_size=args.batch, hot_load=False, settings=settings)
        minutes = (time.perf_counter() - start) / 60
        accuracy = dict(report.accuracy)
        result: dict[str, Any] = {
            "model": str(model), "dev": report.dev_rows, "sft_steps": args.sft_steps, "grpo_steps": args.grpo_steps,
            "grpo_lr": args.grpo_lr, "recipe_minutes": round(minutes, 1),
            "sft_train_loss": report.stages["sft"].metrics.get("train_loss"),
            "grpo_reward": report.stages["grpo"].metrics.get("reward"),
        }
        if not args.no_dpo:
            start = time.perf_counter()
            pairs, train_accuracy = on_policy_pairs("arith-sft", Path(home) / "pairs.jsonl", settings,
                                                    args.pairs_from)
            build_minutes = (time.perf_counter() - start) / 60
            start = time.perf_counter()
            dpo = finetune.dpo(base="arith-sft", data=Path(home) / "pairs.jsonl", name="arith-dpo", lr=args.dpo_lr,
                               epochs=args.dpo_epochs, beta=args.dpo_beta, batch_size=args.batch, max_length=256,
                               hot_load=False, settings=settings)
            train_minutes = (time.perf_counter() - start) / 60
            config = finetune.RecipeConfig(dev_rows=args.dev)
            accuracy["sft+dpo"] = dev_accuracy(resolve_base("arith-dpo", settings), load_dev(args.dev), config)
            result.update({"dpo_pairs": pairs, "sft_train_accuracy": round(train_accuracy, 3),
                           "dpo_lr": args.dpo_lr, "dpo_epochs": args.dpo_epochs, "dpo_beta": args.dpo_beta,
                           "pairs_minutes": round(build_minutes, 1), "dpo_minutes": round(train_minutes, 1),
                           "dpo_train_loss": dpo.metrics.get("train_loss"),
                           "dpo_reward_accuracy": dpo.metrics.get("rewards/accuracies")})
    result["accuracy"] = accuracy
    print(f"dev accuracy on {report.dev_rows} problems (recipe: {minutes:.0f} min):")
    print("| stage | accuracy |\n|---|---|")
    for stage, value in accuracy.items():
        print(f"| {stage} | {value:.1%} |")
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def on_policy_pairs(adapter: str, out: Path, settings: Any, problems: int, batch_size: int = 16) -> tuple[int, float]:
    """Write DPO pairs where ``adapter`` answers one of the first ``problems`` training problems wrongly (its
    answer rejected, the worked answer chosen); return (pairs written, its greedy accuracy on those problems)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.base import load_tokenizer, resolve_base
    from finetune.recipes import generate
    from finetune.tasks import arithmetic

    base = resolve_base(adapter, settings)
    tokenizer = load_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(model, str(base.adapter_path)).merge_and_unload().eval()
    with open(arithmetic.data_file(arithmetic.TRAIN_FILE), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()][:problems]
    pairs, right = [], 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        for text, row in zip(generate(model, tokenizer, [r["prompt"] for r in batch], 48), batch, strict=True):
            if arithmetic.parse_answer(text) == int(row["answer"]):
                right += 1
            elif text.strip():
                pairs.append({"prompt": row["prompt"], "chosen": row["completion"],
                              "rejected": [{"role": "assistant", "content": text.strip()}]})
    out.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    return len(pairs), right / len(rows)


if __name__ == "__main__":
    main()
