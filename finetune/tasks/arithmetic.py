"""Arithmetic word problems: the task the ``sft-then-grpo`` recipe turns a small model into a reasoner on.

Each problem asks for one whole number. The answer format the rewards check is a short calculation
followed by ``<answer>N</answer>``::

    Maya has 12 shells. She finds 7 more. How many shells does Maya have now?
    12 + 7 = 19
    <answer>19</answer>

The shipped files (``finetune/data/arithmetic_train.jsonl``, ``arithmetic_dev.jsonl``) were written by
:func:`write_files` with seeds 1 and 2; regenerate them with ``python -m finetune.tasks.arithmetic``.
Train rows are prompt-completion rows (SFT) with an ``answer`` column (GRPO's rewards read it);
dev rows have ``prompt`` and ``answer``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

INSTRUCTION = "Solve the problem. Show the calculation, then give the final number as <answer>N</answer>."
TRAIN_FILE = "arithmetic_train.jsonl"
DEV_FILE = "arithmetic_dev.jsonl"

_ANSWER = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")
_NAMES = ("Maya", "Leo", "Ana", "Sam", "Priya", "Tom", "Zoe", "Omar", "Lena", "Kai", "Ines", "Ravi")
_ITEMS = ("apples", "shells", "stickers", "marbles", "books", "coins", "pencils", "cards", "stamps", "cookies")


def _add(r: random.Random) -> tuple[str, list[str], int]:
    name, item, a, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(2, 60), r.randint(2, 40)
    return (f"{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?",
            [f"{a} + {b} = {a + b}"], a + b)


def _subtract(r: random.Random) -> tuple[str, list[str], int]:
    name, item, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(2, 30)
    a = b + r.randint(1, 50)
    return (f"{name} had {a} {item} and gave {b} of them away. How many {item} does {name} have left?",
            [f"{a} - {b} = {a - b}"], a - b)


def _multiply(r: random.Random) -> tuple[str, list[str], int]:
    item, a, b = r.choice(_ITEMS), r.randint(2, 12), r.randint(2, 12)
    return (f"There are {a} boxes with {b} {item} in each box. How many {item} are there in all?",
            [f"{a} * {b} = {a * b}"], a * b)


def _divide(r: random.Random) -> tuple[str, list[str], int]:
    name, item, each, friends = r.choice(_NAMES), r.choice(_ITEMS), r.randint(2, 12), r.randint(2, 9)
    total = each * friends
    return (f"{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?",
            [f"{total} / {friends} = {each}"], each)


def _two_steps(r: random.Random) -> tuple[str, list[str], int]:
    name, item, a, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(5, 50), r.randint(2, 30)
    c = r.randint(1, a + b - 1)
    return (f"{name} has {a} {item}, buys {b} more and then gives {c} to a friend. How many {item} does {name} "
            "have now?", [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c)


_KINDS: tuple[Callable[[random.Random], tuple[str, list[str], int]], ...] = (
    _add, _subtract, _multiply, _divide, _two_steps,
)


def prompt_messages(question: str) -> list[dict[str, str]]:
    """The chat prompt for one problem."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{question}"}]


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` problems as rows: ``prompt`` (messages), ``completion`` (the worked answer) and ``answer``."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        question, steps, answer = _KINDS[i % len(_KINDS)](r)
        completion = "\n".join(steps) + f"\n<answer>{answer}</answer>"
        rows.append({"prompt": prompt_messages(question),
                     "completion": [{"role": "assistant", "content": completion}],
                     "answer": answer})
    return rows


def write_files(folder: Path, train: int = 400, dev: int = 200) -> None:
    """Write the train (seed 1) and dev (seed 2) files; dev questions never appear in train."""
    train_rows = generate(train, seed=1)
    seen = {row["prompt"][0]["content"] for row in train_rows}
    dev_rows = [row for row in generate(dev * 2, seed=2) if row["prompt"][0]["content"] not in seen][:dev]
    with open(folder / TRAIN_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in train_rows)
    with open(folder / DEV_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"prompt": row["prompt"], "answer": row["answer"]}) + "\n" for row in dev_rows)


def data_file(name: str) -> Path:
    """Path of a shipped data file (``arithmetic_train.jsonl`` or ``arithmetic_dev.jsonl``)."""
    return Path(str(files("finetune") / "data" / name))


def parse_answer(text: str) -> int | None:
    """The number in the last ``<answer>N</answer>`` of ``text``, or None."""
    found = _ANSWER.findall(text)
    return int(found[-1]) if found else None


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational completions: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def correct(prompts: list[Any], completions: list[Any], answer: list[int], **kwargs: Any) -> list[float]:
    """1.0 when the completion's ``<answer>`` is the right number, else 0.0 (a GRPO reward function)."""
    return [1.0 if parse_answer(_text(c)) == int(a) else 0.0 for c, a in zip(completions, answer, strict=True)]


def formatted(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    """0.2 for a completion that ends with exactly one ``<answer>N</answer>`` (a GRPO reward function)."""
    scores = []
    for completion in completions:
        text = _text(completion).strip()
        scores.append(0.2 if len(_ANSWER.findall(text)) == 1 and _ANSWER.search(text).end() == len(text) else 0.0)
    return scores


if __name__ == "__main__":
    write_files(Path(__file__).resolve().parent.parent / "data")
