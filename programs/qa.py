"""Extractive question answering: a passage and a question -> the span of the passage that answers it.

Example:
    >>> roost.run("programs.qa", input={"context": "Oakhollow lies on the Arlen River.",
    ...                                  "question": "Which river is Oakhollow on?"})
    {'answer': 'Arlen River'}
"""

from __future__ import annotations

from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.metrics import exact_match, token_f1

DESCRIPTION = "Extractive QA: {context, question} -> the answer, copied from the context."

TASK = Task("qa", inputs=("context", "question"), labels=("answer",), max_tokens=48)


class AnswerFromContext(dspy.Signature):
    """Answer the question with the shortest exact span copied from the context."""

    context: str = dspy.InputField(desc="a short passage")
    question: str = dspy.InputField(desc="a question the passage answers")
    answer: str = dspy.OutputField(desc="a few words copied verbatim from the context")


class Reader(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(AnswerFromContext)

    def forward(self, context: str, question: str) -> dspy.Prediction:
        return self.predict(context=context, question=question)


def exact(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """SQuAD exact match (case, punctuation and articles ignored)."""
    return exact_match(str(prediction.answer), example.answer)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """SQuAD token F1 between the predicted and the reference answer."""
    return token_f1(str(prediction.answer), example.answer)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Answer ``{"context": ..., "question": ...}``."""
    return run_program(Reader(), TASK, __name__, input, on_step=on_step, **options)
