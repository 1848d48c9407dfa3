"""Text to code: a task in English and a function header -> a Python function, scored by running tests.

The metric executes the generated function against the item's hidden test cases
in :mod:`programs.sandbox` (separate process, timeout, memory limit, reduced
builtins) and counts the item as solved only when every test passes (pass@1).

Example:
    >>> roost.run("programs.text2code", input={"task": "Return `x` multiplied by 3.",
    ...                                         "header": "def scale(x: int) -> int"})
    {'code': 'def scale(x):\\n    return x * 3'}
"""

from __future__ import annotations

import re
from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.sandbox import run_tests

DESCRIPTION = "Text to code: {task, header} -> a Python function (scored by running hidden tests)."

TASK = Task("text2code", inputs=("task", "header"), labels=("code",), max_tokens=256)

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


class WriteFunction(dspy.Signature):
    """Write a Python function that does the task. Use exactly the name and parameters of the given header, return the
    result (do not print it), and use only the standard library."""

    task: str = dspy.InputField(desc="what the function must do")
    header: str = dspy.InputField(desc="the function's first line: name, parameters and types")
    code: str = dspy.OutputField(desc="the complete function definition, Python source only")


class Coder(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(WriteFunction)

    def forward(self, task: str, header: str) -> dspy.Prediction:
        return self.predict(task=task, header=header)


def extract_code(text: str) -> str:
    """The source in a model's answer: the first fenced block when there is one, else the whole text."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip("\n")


def entry_point(header: str) -> str:
    """The function name in ``def name(...)`` (or a bare ``name(...)``)."""
    match = re.match(r"\s*(?:def\s+)?([A-Za-z_]\w*)\s*\(", header)
    if not match:
        raise ValueError(f"not a function header: {header!r}")
    return match.group(1)


def pass_fraction(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """The fraction of the item's tests that the generated function passes."""
    results = run_tests(extract_code(str(prediction.code)), example.entry_point, list(example.tests))
    return sum(results) / len(results) if results else 0.0


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """pass@1: 1.0 when the generated function passes every test of the item, else 0.0."""
    return float(pass_fraction(example, prediction, trace) == 1.0)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Write one function for ``{"task": ..., "header": "def name(args) -> type"}``."""
    result = run_program(Coder(), TASK, __name__, input, on_step=on_step, **options)
    return {"code": extract_code(str(result["code"]))}
