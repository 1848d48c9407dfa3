"""Paraphrasing: a sentence -> the same meaning in other words.

The metric rewards closeness to a reference paraphrase (chrF) and gives zero to
an answer that only repeats the input, which would otherwise score well.

Example:
    >>> roost.run("programs.paraphrase", input="The meeting has been moved to Friday.")
    {'paraphrase': 'The meeting will now take place on Friday.'}
"""

from __future__ import annotations

from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.metrics import chrf, normalize_answer

DESCRIPTION = "Paraphrasing: a sentence -> the same meaning in different words."

TASK = Task("paraphrase", inputs=("sentence",), labels=("paraphrase",), max_tokens=80)


class Rephrase(dspy.Signature):
    """Rewrite the sentence so that it means exactly the same thing but uses different words or structure."""

    sentence: str = dspy.InputField()
    paraphrase: str = dspy.OutputField(desc="one sentence, not a copy of the input")


class Paraphraser(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(Rephrase)

    def forward(self, sentence: str) -> dspy.Prediction:
        return self.predict(sentence=sentence)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """chrF against the reference paraphrase; 0.0 when the output is the input again."""
    output = str(prediction.paraphrase).strip()
    if normalize_answer(output) == normalize_answer(example.sentence):
        return 0.0
    return chrf(output, example.paraphrase)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Paraphrase one sentence (a string, or ``{"sentence": ...}``)."""
    return run_program(Paraphraser(), TASK, __name__, input, on_step=on_step, **options)
