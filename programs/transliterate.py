"""Transliteration: Russian in Cyrillic -> Latin letters, by roost's fixed scheme.

The scheme (:data:`SCHEME`) is a plain-ASCII, BGN/PCGN-like romanization with
one rule per letter and no context rules, so each input has exactly one right
answer: ж zh, х kh, ц ts, ч ch, ш sh, щ shch, ё yo, й y, ы y, ю yu, я ya,
э e; the hard and soft signs (ъ, ь) are dropped. Case carries over to the first
Latin letter (Щ -> Shch); anything that is not Cyrillic is kept as is.

Example:
    >>> transliterate("Щукин, Ёж и Юля")
    'Shchukin, Yozh i Yulya'
"""

from __future__ import annotations

from typing import Any

import dspy

from programs.common import OnStep, Task, run_program
from programs.metrics import char_accuracy

DESCRIPTION = "Transliteration: Russian Cyrillic -> Latin letters (roost's ASCII scheme)."

SCHEME: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "",
    "э": "e", "ю": "yu", "я": "ya",
}

TASK = Task("transliterate", inputs=("cyrillic",), labels=("latin",), max_tokens=48)


def transliterate(text: str) -> str:
    """The reference transliteration of ``text`` under :data:`SCHEME`."""
    out = []
    for ch in text:
        latin = SCHEME.get(ch.lower())
        if latin is None:
            out.append(ch)
        elif ch.isupper():
            out.append(latin[:1].upper() + latin[1:])
        else:
            out.append(latin)
    return "".join(out)


class Transliterate(dspy.Signature):
    """Transliterate Russian text from Cyrillic into Latin letters, letter by letter: ж=zh, х=kh, ц=ts, ч=ch,
    ш=sh, щ=shch, ё=yo, й=y, ы=y, ю=yu, я=ya, э=e; drop ъ and ь; keep spaces, hyphens and capital letters."""

    cyrillic: str = dspy.InputField(desc="Russian text in Cyrillic script")
    latin: str = dspy.OutputField(desc="the same text in Latin letters")


class Transliterator(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(Transliterate)

    def forward(self, cyrillic: str) -> dspy.Prediction:
        return self.predict(cyrillic=cyrillic)


def exact(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """1.0 for the exact reference transliteration (surrounding spaces ignored)."""
    return float(str(prediction.latin).strip() == example.latin)


def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """Character accuracy: 1 - character error rate against the reference, floored at 0."""
    return char_accuracy(str(prediction.latin).strip(), example.latin)


def run(input: str | dict[str, Any], *, on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Transliterate one text (a string, or ``{"cyrillic": ...}``)."""
    return run_program(Transliterator(), TASK, __name__, input, on_step=on_step, **options)
