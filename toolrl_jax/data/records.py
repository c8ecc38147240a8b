"""The task record every source produces, and the JSONL reader for user task files.

A record is a plain dict with string fields (what TFDS stores) plus a metadata dict::

    {"id", "question", "answer", "task", "difficulty", "trajectory", "metadata"}

``difficulty`` is ``"easy"``, ``"hard"`` or ``""`` (unknown). ``trajectory`` is an optional
long-mode completion (``<result>`` blocks mark tool output); ``""`` when the source has none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from toolrl_jax.data.trajectories import split_segments
from toolrl_jax.jsonl import iter_json_lines
from toolrl_jax.verifiers import extract_tagged

FIELDS = ("id", "question", "answer", "task", "difficulty", "trajectory", "metadata")
DIFFICULTIES = ("easy", "hard", "")
_KNOWN_JSONL_KEYS = {"id", "question", "answer", "task", "difficulty", "trajectory", "metadata"}


class DataError(ValueError):
    """A malformed data row or file; the message names the file and line."""


def make_record(
    *,
    id: str,
    question: str,
    answer: str,
    task: str,
    difficulty: str = "",
    trajectory: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "question": question,
        "answer": answer,
        "task": task,
        "difficulty": difficulty,
        "trajectory": trajectory,
        "metadata": dict(metadata or {}),
    }


def check_record(record: Mapping[str, Any]) -> None:
    """Raises ValueError naming the first problem: types, empties, a trajectory that does not
    split into segments or does not end in an answer."""
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"missing fields {missing}")
    for name in FIELDS[:-1]:
        if not isinstance(record[name], str):
            raise ValueError(f"'{name}' must be a string, got {type(record[name]).__name__}")
    for name in ("id", "question", "answer", "task"):
        if not record[name].strip():
            raise ValueError(f"'{name}' is empty")
    if record["difficulty"] not in DIFFICULTIES:
        raise ValueError(f"'difficulty'={record['difficulty']!r} must be one of {DIFFICULTIES}")
    if not isinstance(record["metadata"], Mapping):
        raise ValueError("'metadata' must be an object")
    if record["trajectory"]:
        try:
            split_segments(record["trajectory"])
        except ValueError as e:
            raise ValueError(f"'trajectory' is malformed: {e}") from e
        if extract_tagged(record["trajectory"]) is None:
            raise ValueError("'trajectory' has no <answer>…</answer>")


def _answer_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'answer' must be a string or a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"'answer' must be finite, got {value}")
    return str(int(value)) if float(value).is_integer() else repr(value)


def row_to_record(row: Any, default_id: str) -> dict[str, Any]:
    """A user JSONL row -> record. Keys other than the record fields go into metadata."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    if "tools" in row:  # a function-calling item: {id, messages|question, tools, answer}
        from toolrl_jax.data.function_calling import row_to_fc_record

        return row_to_fc_record(row, default_id)
    for key in ("question", "answer"):
        if key not in row:
            raise ValueError(f"missing required key '{key}'")
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")
    extras = {k: v for k, v in row.items() if k not in _KNOWN_JSONL_KEYS}
    record = make_record(
        id=str(row.get("id", default_id)),
        question=row["question"],
        answer=_answer_text(row["answer"]),
        task=row.get("task", "jsonl"),
        difficulty=row.get("difficulty", ""),
        trajectory=row.get("trajectory", "") or "",
        metadata={**metadata, **extras},
    )
    check_record(record)
    return record


@dataclasses.dataclass
class JsonlReadResult:
    records: list[dict[str, Any]]
    skipped: list[str]  # "path:line: reason" for each skipped row


def read_task_jsonl(
    path: str | Path, on_bad_row: Literal["raise", "skip"] = "raise"
) -> JsonlReadResult:
    """Reads a task JSONL file; a bad row raises :class:`DataError` (``path:line: reason``) or is
    skipped and reported, as ``on_bad_row`` says. Duplicate ids count as bad rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: task file not found")
    result = JsonlReadResult(records=[], skipped=[])
    seen: dict[str, int] = {}
    bad = None if on_bad_row == "raise" else result.skipped
    try:
        lines = list(iter_json_lines(path, bad_lines=bad))
    except ValueError as e:
        raise DataError(str(e)) from e
    for lineno, row in lines:
        try:
            record = row_to_record(row, default_id=f"{path.stem}-{lineno}")
            if record["id"] in seen:
                first = seen[record["id"]]
                raise ValueError(f"duplicate id {record['id']!r} (first on line {first})")
        except ValueError as e:
            message = f"{path}:{lineno}: {e}"
            if on_bad_row == "raise":
                raise DataError(message) from e
            result.skipped.append(message)
            continue
        seen[record["id"]] = lineno
        result.records.append(record)
    return result
