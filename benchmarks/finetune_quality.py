"""Dev accuracy of the ``sft-then-grpo`` recipe on the arithmetic task: base, after SFT, after GRPO.

The task (``finetune/tasks/arithmetic.py``) asks for one whole number per word problem; an answer counts
when its ``<answer>N</answer>`` is right, greedy, on the first ``--dev`` problems of the shipped dev set
(never seen in training). The store is a temporary one holding a copy of ``--model``, so nothing is
written to yours.

Run: ``.venv/bin/python benchmarks/finetune_quality.py [--sft-steps 50] [--grpo-steps 10] [--dev 100]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = Path("/tmp/rh1/bases/smollm2-135m-instruct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a local model folder")
    parser.add_argument("--sft-steps", type=int, default=50, help="SFT steps (0: one epoch of 400 rows)")
    parser.add_argument("--grpo-steps", type=int, default=10)
    parser.add_argument("--grpo-lr", type=float, default=2e-5)
    parser.add_argument("--dev", type=int, default=100, help="dev problems scored at each stage")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    import finetune
    from roost.config import load_settings
    from roost.models import pull

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as home:
        settings = load_settings(env={"ROOST_HOME": home, "ROOST_URL": "http://127.0.0.1:9"})
        pull(str(args.model), name="base", settings=settings, progress=False)
        start = time.perf_counter()
        report = finetune.sft_then_grpo(base="base", name="arith", sft_steps=args.sft_steps,
                                        grpo_steps=args.grpo_steps, grpo_lr=args.grpo_lr, dev_rows=args.dev,
                                        batch_size=args.batch, hot_load=False, settings=settings)
        minutes = (time.perf_counter() - start) / 60
    result = {"dev": report.dev_rows, "accuracy": report.accuracy, "sft_steps": args.sft_steps,
              "grpo_steps": args.grpo_steps, "grpo_lr": args.grpo_lr, "minutes": round(minutes, 1),
              "sft_train_loss": report.stages["sft"].metrics.get("train_loss"),
              "grpo_reward": report.stages["grpo"].metrics.get("reward")}
    print(f"dev accuracy on {report.dev_rows} problems ({minutes:.0f} min in all):")
    print("| stage | accuracy |\n|---|---|")
    for stage, accuracy in report.accuracy.items():
        print(f"| {stage} | {accuracy:.1%} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
