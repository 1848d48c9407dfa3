"""Named-entity tagging: a sentence's tokens -> one BIO tag per token (PER, ORG, LOC).

The tags are structured output: a list whose items are limited to the nine BIO
tags, aligned with the input tokens. A prediction of the wrong length is scored
as if cut or padded with ``O`` to the sentence's length.

Example:
    >>> roost.run("programs.ner", input="Maria Lopez works for Acme Corporation in Paris.")["entities"]
    [{'text': 'Maria Lopez', 'type': 'PER'}, {'text': 'Acme Corporation', 'type': 'ORG'}, {'text': 'Paris', ...}]
"""

from __future__ import annotations

import re
from typing import Any, Literal

import dspy

from programs.common import OnStep, Task, run_program

DESCRIPTION = "Named-entity tagging: a sentence -> a BIO tag (PER, ORG, LOC) for each token."

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
Tag = Literal["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]

TASK = Task("ner", inputs=("tokens",), labels=("tags",), max_tokens=160)

_TOKEN = re.compile(r"'s\b|\w+(?:-\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Split a sentence the way the dataset is split: words, hyphenated words, "'s" and punctuation."""
    return _TOKEN.findall(text)


class TagEntities(dspy.Signature):
    """Tag each token with its named-entity label in BIO format: B- starts an entity, I- continues it, O is
    outside any entity. PER is a person, ORG an organization or company, LOC a place. Give exactly one tag
    per token, in order."""

    tokens: list[str] = dspy.InputField(desc="the sentence's tokens")
    tags: list[Tag] = dspy.OutputField(desc="one tag per token, same length as tokens")


class Tagger(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(TagEntities)

    def forward(self, tokens: list[str]) -> dspy.Prediction:
        return self.predict(tokens=tokens)


def aligned(tags: Any, length: int) -> list[str]:
    """``tags`` as a list of exactly ``length`` strings: cut, or padded with ``O``."""
    tags = [str(t) for t in tags] if isinstance(tags, list | tuple) else []
    return (tags + ["O"] * length)[:length]


def token_f1(gold: list[str], predicted: list[str]) -> float:
    """Micro F1 over the tokens that carry an entity tag; 1.0 when neither side tags any token."""
    predicted = aligned(predicted, len(gold))
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g != "O" and g == p)
    n_gold = sum(1 for g in gold if g != "O")
    n_pred = sum(1 for p in predicted if p != "O")
    if n_gold == 0 and n_pred == 0:
        return 1.0
    if correct == 0:
        return 0.0
    precision, recall = correct / n_pred, correct / n_gold
    return 2 * precision * recall / (precision + recall)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """Token-level F1 of the entity tags against the reference."""
    return token_f1(list(example.tags), prediction.tags)


def entities(tokens: list[str], tags: list[str]) -> list[dict[str, str]]:
    """The entity spans a BIO tagging marks, as ``{"text", "type"}``; a stray I- starts a new entity."""
    spans: list[dict[str, Any]] = []
    for token, tag in zip(tokens, aligned(tags, len(tokens)), strict=True):
        kind = tag[2:]
        if tag.startswith("I-") and spans and spans[-1]["type"] == kind and spans[-1]["open"]:
            spans[-1]["words"].append(token)
        elif tag.startswith(("B-", "I-")):
            spans.append({"type": kind, "words": [token], "open": True})
        elif spans:
            spans[-1]["open"] = False
    return [{"text": " ".join(s["words"]), "type": s["type"]} for s in spans]


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Tag one sentence: a string (split with :func:`tokenize`) or ``{"tokens": [...]}``."""
    if isinstance(input, str):
        input = {"tokens": tokenize(input)}
    result = run_program(Tagger(), TASK, __name__, input, on_step=on_step, **options)
    tokens = list(input["tokens"]) if isinstance(input, dict) else []
    tags = aligned(result["tags"], len(tokens))
    return {"tokens": tokens, "tags": tags, "entities": entities(tokens, tags)}
