"""The one JSONL reader: every JSON-lines input (tasks, trajectories, search corpora) goes through
:func:`iter_json_lines`, so a bad line is always reported the same way (``path:line: reason``).
Paths may be URIs (``gs://…``), read through ``etils.epath``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from etils import epath


def iter_json_lines(path: str | os.PathLike,
                    bad_lines: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for every non-blank line of a JSONL file.

    A line that is not JSON raises ``ValueError("<path>:<line>: not a JSON line (<why>)")`` — or,
    when ``bad_lines`` is a list, that message is appended to it and reading goes on.
    """
    with epath.Path(path).open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                message = f"{path}:{lineno}: not a JSON line ({e.msg})"
                if bad_lines is None:
                    raise ValueError(message) from None
                bad_lines.append(message)
                continue
            yield lineno, value
