"""GSM8K rows -> task records whose trajectories are the dataset's own calculator traces.

GSM8K solutions annotate each calculation as ``<<expr=value>>`` (the calculator calls its authors
made). Each becomes ``<calculator>expr</calculator>`` + the ``<result>`` block the tool returns,
and the final ``#### 18`` line becomes ``<answer>18</answer>``::

    Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.
 -> Janet sells 16 - 3 - 4 = <calculator>16-3-4</calculator>\\n<result>\\n9\\n</result>\\n9 duck
    eggs a day.

The result is recomputed exactly (:mod:`toolrl_jax.data.expressions`) rather than copied from the
annotation: the trajectory must show what the calculator prints. Annotations that disagree with
the recomputed value, or that cannot be evaluated (left as plain text), are counted in metadata.

Source: https://github.com/openai/grade-school-math (MIT License, Copyright (c) 2021 OpenAI).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from toolrl_jax.data.expressions import ExpressionError, calculate
from toolrl_jax.data.records import check_record, make_record
from toolrl_jax.data.trajectories import format_tool_result
from toolrl_jax.verifiers import verify_math

TASK = "gsm8k"
ASSET_DIR = Path(__file__).parent / "assets" / "gsm8k"
SHIPPED_SUBSET = ASSET_DIR / "test_first200.jsonl"
_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_FINAL_RE = re.compile(r"\n?####\s*(.+?)\s*$")
_EASY_MAX_CALLS = 2  # at most this many calculator steps counts as "easy"


def final_answer(solution: str) -> str:
    """The number after ``####``, without thousands separators."""
    match = _FINAL_RE.search(solution)
    if match is None:
        raise ValueError("solution has no final '#### <answer>' line")
    return match.group(1).replace(",", "").strip()


def solution_to_trajectory(solution: str) -> tuple[str, dict[str, int]]:
    """Converts a GSM8K solution into a long-mode trajectory; returns it and its call counts."""
    answer = final_answer(solution)
    body = _FINAL_RE.sub("", solution)
    stats = {"calls": 0, "mismatched": 0, "uncalled": 0}
    parts, pos = [], 0
    for match in _ANNOTATION_RE.finditer(body):
        parts.append(body[pos : match.start()])
        pos = match.end()
        expr, sep, annotated = match.group(1).rpartition("=")
        try:
            if not sep:
                raise ExpressionError("annotation has no '='")
            output = calculate(expr)
        except ExpressionError:
            stats["uncalled"] += 1  # not a call we can replay: keep the author's text
            parts.append(match.group(1))
            continue
        stats["calls"] += 1
        if not verify_math(annotated, output).correct:  # the annotation vs what the calculator prints
            stats["mismatched"] += 1
        parts.append(f"<calculator>{expr}</calculator>{format_tool_result(output)}")
    parts.append(body[pos:])
    text = "".join(parts).rstrip()
    return f"{text}\n<answer>{answer}</answer>", stats


def row_to_record(row: Any, index: int) -> dict[str, Any]:
    """One GSM8K JSON row (``question``, ``answer`` = solution) -> task record."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"missing or non-string '{key}'")
    trajectory, stats = solution_to_trajectory(row["answer"])
    record = make_record(
        id=f"{TASK}-{index:05d}",
        question=row["question"].strip(),
        answer=final_answer(row["answer"]),
        task=TASK,
        difficulty="easy" if stats["calls"] <= _EASY_MAX_CALLS else "hard",
        trajectory=trajectory,
        metadata={**stats, "solution": row["answer"]},
    )
    check_record(record)
    return record
