"""Per-step metrics (``metrics.jsonl`` + TensorBoard) and sampled rollouts of a run's work directory.

Layout inside the work directory (DESIGN §1)::

    metrics.jsonl              one JSON object per step: {"step": …, "time": …, **metrics}
    tensorboard/events.out.*   the same scalars for TensorBoard
    rollouts/step_000120.jsonl sampled trajectories of a step (``toolrl_jax.types`` records)

Only one process should write (process 0 on multi-host); these helpers do not check.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toolrl_jax.train.tensorboard import TensorBoardWriter
from toolrl_jax.types import Trajectory, dump_trajectories

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
ROLLOUTS_DIR = "rollouts"
NONFINITE_KEY = "nonfinite"  # {"loss": "nan", …}: what the nulls in this line were


def _to_python(value: Any) -> Any:
    """Plain JSON value for a metric: numpy / JAX scalars and 0-d arrays become int or float."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy / jax 0-d arrays (no jax import needed)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _to_python(item())
    raise TypeError(f"metric value must be a number, bool or string, got {type(value).__name__}: {value!r}")


def read_metrics(path: str) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``. A last line cut off by a killed run is dropped; a bad line anywhere
    else raises ``ValueError`` naming the line, because it means the file was damaged, not cut."""
    rows, _ = _read_lines(path)
    return [row for row, _ in rows]


def _read_lines(path: str) -> tuple[list[tuple[dict[str, Any], str]], bool]:
    """``([(row, raw_line)], dropped_tail)``; the raw line is kept so rewrites preserve it verbatim."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # After the final "\n" split() leaves "", so a complete file's last element is empty; anything
    # else there is a line without its newline, i.e. one the writer never finished.
    tail, lines = lines[-1], lines[:-1]
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from e
        if not isinstance(row, dict) or "step" not in row:
            raise ValueError(f"{path}:{lineno}: expected an object with a 'step' key")
        rows.append((row, line))
    return rows, bool(tail.strip())


class MetricsLogger:
    """Appends one JSON line per step to ``<workdir>/<filename>`` and mirrors numbers to TensorBoard.

    Each line is flushed as written, so a SIGKILL loses at most the line in flight.
    Non-finite numbers are written as ``null`` and named under ``"nonfinite"`` in the same line
    (strict JSON has no NaN; other tools would choke on Python's ``NaN`` token); TensorBoard gets
    the real NaN / inf, which it can show.

    ``start_step``: the step the run (re)starts at. Lines already in the file with step >= it are
    dropped (the file is rewritten atomically), so a run resumed from a checkpoint does not log a
    step twice. ``None`` appends to what is there (e.g. an evaluation adding lines). In both cases a
    truncated last line from a killed run is removed, so the next line does not get glued onto it.
    """

    def __init__(
        self,
        workdir: str,
        *,
        tensorboard: bool = True,
        start_step: int | None = None,
        filename: str = METRICS_FILE,
    ):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, filename)
        if os.path.exists(self.path):
            self._repair(start_step)
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = (
            TensorBoardWriter(os.path.join(workdir, TENSORBOARD_DIR), start_step=start_step)
            if tensorboard
            else None
        )

    def _repair(self, start_step: int | None) -> None:
        rows, dropped_tail = _read_lines(self.path)
        keep = [line for row, line in rows if start_step is None or row["step"] < start_step]
        if len(keep) == len(rows) and not dropped_tail:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # atomic: a crash here leaves the old file or the new, never half

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Writes one line for ``step``; returns the row as written. Values: numbers (incl. numpy /
        JAX scalars), bools, strings; only numbers go to TensorBoard."""
        row: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        nonfinite: dict[str, str] = {}
        scalars: dict[str, float] = {}
        for key, value in metrics.items():
            if key in row or key == NONFINITE_KEY:
                raise ValueError(f"metric name {key!r} is reserved in {METRICS_FILE}")
            value = _to_python(value)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                scalars[key] = float(value)
                if isinstance(value, float) and not math.isfinite(value):
                    nonfinite[key] = repr(value)  # "nan", "inf", "-inf"
                    value = None
            row[key] = value
        if nonfinite:
            row[NONFINITE_KEY] = nonfinite
        self._f.write(json.dumps(row, allow_nan=False) + "\n")
        self._f.flush()
        if self._tb is not None and scalars:
            self._tb.scalars(int(step), scalars)
        return row

    def flush(self) -> None:
        self._f.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_rollouts(
    workdir: str, step: int, trajectories: Sequence[Trajectory], max_rows: int | None = None
) -> str:
    """Writes up to ``max_rows`` trajectories to ``rollouts/step_{step:06d}.jsonl``; returns the path.

    Keeps the *first* rows: the engine emits a prompt's G samples together, so a prefix shows whole
    groups side by side (what differs between a rewarded and an unrewarded sample). Each record is
    token-exact and carries the decoded ``text`` for reading. The file is replaced atomically, so a
    resumed run that saves the same step again overwrites instead of appending duplicates.
    """
    out_dir = os.path.join(workdir, ROLLOUTS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{int(step):06d}.jsonl")
    rows = list(trajectories) if max_rows is None else list(trajectories)[: max(0, max_rows)]
    tmp = path + ".tmp"
    if os.path.exists(tmp):  # left by a crash; dump_trajectories appends
        os.remove(tmp)
    dump_trajectories(tmp, rows)  # opens in append mode: creates the file even for no rows
    os.replace(tmp, path)
    return path
