"""Text metrics shared by the programs: all pure Python, all in [0, 1], higher is better.

Example:
    >>> round(chrf("le chat noir", "le chat noir"), 3)
    1.0
    >>> token_f1("the red car", "a blue car")
    0.5
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no English articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the two strings agree after :func:`normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's bag-of-tokens F1 after :func:`normalize_answer`; 1.0 when both are empty."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def chrf(prediction: str, reference: str, *, max_n: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović 2015): character n-gram F-score, n = 1..6, recall weighted by beta = 2.

    Spaces are removed before counting, as sacrebleu's default does; the score is the
    mean over n of the F-beta of n-gram precision and recall, scaled to [0, 1].
    """
    hyp = unicodedata.normalize("NFC", prediction).replace(" ", "")
    ref = unicodedata.normalize("NFC", reference).replace(" ", "")
    if not hyp or not ref:
        return float(hyp == ref)
    scores = []
    for n in range(1, max_n + 1):
        hyp_grams = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
        ref_grams = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
        if not hyp_grams or not ref_grams:
            continue  # a string shorter than n has no n-grams: leave this order out, as sacrebleu does
        common = sum((hyp_grams & ref_grams).values())
        precision = common / sum(hyp_grams.values())
        recall = common / sum(ref_grams.values())
        if precision + recall == 0:
            scores.append(0.0)
        else:
            scores.append((1 + beta**2) * precision * recall / (beta**2 * precision + recall))
    return sum(scores) / len(scores) if scores else 0.0


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_accuracy(prediction: str, reference: str) -> float:
    """1 - character error rate, floored at 0: edits needed, over the reference's length."""
    if not reference:
        return float(not prediction)
    return max(0.0, 1.0 - levenshtein(prediction, reference) / len(reference))
