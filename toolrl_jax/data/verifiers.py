"""Answer extraction and verification: numeric compare for math, normalised exact match otherwise.

Pure string functions; the reward and eval code call :func:`is_correct` with a task record and the
model's completion text.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
NUMERIC_TASKS = frozenset({"arithmetic", "gsm8k"})
_NUMBER_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def extract_answer(completion: str) -> str | None:
    """The text of the *last* ``<answer>…</answer>`` in a completion, or None when there is none."""
    found = ANSWER_RE.findall(completion)
    return found[-1].strip() if found else None


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def parse_number(text: str) -> float | None:
    """``"$1,234.50"`` -> 1234.5; None when the text is not a single number."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace("%", "").strip()
    cleaned = cleaned.rstrip(".")
    if not _NUMBER_RE.match(cleaned):
        return None
    return float(cleaned)


def numbers_equal(a: float, b: float, rel_tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def answers_match(predicted: str, gold: str, numeric: bool) -> bool:
    """Numeric compare when ``numeric`` and both sides parse; normalised exact match otherwise."""
    if numeric:
        p, g = parse_number(predicted), parse_number(gold)
        if p is not None and g is not None:
            return numbers_equal(p, g)
        if g is not None:  # a math gold answer and an unparseable prediction
            return False
    return normalize_answer(predicted) == normalize_answer(gold)


def is_numeric_task(record: Mapping[str, object]) -> bool:
    """Math tasks compare numbers; user JSONL tasks do whenever the gold answer is a number."""
    if record["task"] in NUMERIC_TASKS:
        return True
    return record["task"] not in ("lookup",) and parse_number(str(record["answer"])) is not None


def is_correct(record: Mapping[str, object], completion: str) -> bool:
    """Whether ``completion``'s final ``<answer>`` is right for the task record."""
    predicted = extract_answer(completion)
    if predicted is None:
        return False
    return answers_match(predicted, str(record["answer"]), is_numeric_task(record))
