"""Summarization: a short news item (three to five sentences) -> one sentence.

Example:
    >>> roost.run("programs.summarize", input="The city council of Ashton met on Monday evening. ...")
    {'summary': "Ashton's city council approved a public swimming pool, with work starting in May."}
"""

from __future__ import annotations

from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.metrics import token_f1

DESCRIPTION = "Summarization: a short news item -> a one-sentence summary."

TASK = Task("summarize", inputs=("document",), labels=("summary",), max_tokens=96)


class SummarizeNews(dspy.Signature):
    """Summarize the news item in one sentence that keeps its main fact and key numbers."""

    document: str = dspy.InputField(desc="a short news item")
    summary: str = dspy.OutputField(desc="one sentence")


class Summarizer(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(SummarizeNews)

    def forward(self, document: str) -> dspy.Prediction:
        return self.predict(document=document)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """Token F1 (SQuAD-normalized bag of words) against the reference summary."""
    return token_f1(str(prediction.summary), example.summary)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Summarize one document (a string, or ``{"document": ...}``)."""
    return run_program(Summarizer(), TASK, __name__, input, on_step=on_step, **options)
