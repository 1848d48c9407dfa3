"""Write a program's dataset as chat-format JSONL for fine-tuning, in the prompt format the program uses.

    python -m programs.export classify --split train --out classify.train.chat.jsonl
    roost finetune sft ...   # then train on it (see the finetune docs)

Each line is a TRL conversational row, ``{"messages": [system, user, assistant]}``:
the system and user turns are exactly what ``dspy.JSONAdapter`` sends for the
program's signature, the assistant turn is the reference answer as that JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

PROGRAMS = ("classify", "ner", "qa", "translate", "summarize", "paraphrase", "transliterate", "text2code")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m programs.export", description=__doc__.splitlines()[0])
    parser.add_argument("program", choices=PROGRAMS)
    parser.add_argument("--split", default="train", choices=("train", "dev"))
    parser.add_argument("--adapter", default="json", choices=("json", "chat"),
                        help="the prompt format to train for (default: json, what the programs use)")
    parser.add_argument("--limit", type=int, help="only the first N rows")
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from programs.common import finetune_rows

    rows = finetune_rows(importlib.import_module(f"programs.{args.program}"), args.split, adapter=args.adapter,
                         limit=args.limit)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.out is None:
        sys.stdout.write(text)
    else:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out)  # nothing half-written
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
