"""Sentence classification: a customer-support ticket -> its intent, one of five labels.

The label set is a ``Literal`` type, so the JSON adapter asks the backend for an
enum and a small model cannot answer outside it.

Example:
    >>> roost.run("programs.classify", input="My parcel never arrived.")
    {'label': 'shipping'}
"""

from __future__ import annotations

from typing import Any, Literal

import dspy

from programs.common import OnStep, Task, run_program

DESCRIPTION = "Sentence classification: a support ticket -> billing, shipping, technical, account or returns."

LABELS = ("billing", "shipping", "technical", "account", "returns")
Label = Literal["billing", "shipping", "technical", "account", "returns"]

TASK = Task("classify", inputs=("text",), labels=("label",), max_tokens=24)


class ClassifyTicket(dspy.Signature):
    """Classify a customer-support ticket by what the customer needs help with.

    billing: charges, invoices, payment methods, prices. shipping: delivery, tracking, couriers.
    technical: the app or website failing. account: sign-in, passwords, profile, closing the account.
    returns: sending an item back, exchanges, refunds for returned items."""

    text: str = dspy.InputField(desc="the ticket, as the customer wrote it")
    label: Label = dspy.OutputField(desc="the ticket's intent")


class Classify(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(ClassifyTicket)

    def forward(self, text: str) -> dspy.Prediction:
        return self.predict(text=text)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """Accuracy: 1.0 when the predicted label is the reference label."""
    return float(str(prediction.label).strip().lower() == example.label)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Classify one ticket (a string, or ``{"text": ...}``)."""
    return run_program(Classify(), TASK, __name__, input, on_step=on_step, **options)
