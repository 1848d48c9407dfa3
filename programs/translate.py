"""Translation: an English sentence -> French.

Example:
    >>> roost.run("programs.translate", input="The cat is sleeping on the bed.")
    {'french': 'Le chat dort sur le lit.'}
"""

from __future__ import annotations

from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.metrics import chrf

DESCRIPTION = "Translation: an English sentence -> French."

TASK = Task("translate", inputs=("english",), labels=("french",), max_tokens=96)


class EnglishToFrench(dspy.Signature):
    """Translate the English sentence into natural, correct French."""

    english: str = dspy.InputField()
    french: str = dspy.OutputField()


class Translator(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(EnglishToFrench)

    def forward(self, english: str) -> dspy.Prediction:
        return self.predict(english=english)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """chrF (character n-gram F-score, beta 2) against the reference translation."""
    return chrf(str(prediction.french).strip(), example.french)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Translate one sentence (a string, or ``{"english": ...}``)."""
    return run_program(Translator(), TASK, __name__, input, on_step=on_step, **options)
