"""A terminal progress line with ETA and a few key metrics::

    rl  [###.......] 12/40  30%  eta 1m05s  reward=0.41 acc=0.62 calls=1.3

On a TTY the line is redrawn in place (``\\r``); elsewhere (CI logs, ``nohup``) a plain line is
printed every ``every`` steps, because ``\\r`` redraws turn a log file into one enormous line.
"""

from __future__ import annotations

import collections
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def format_eta(seconds: float | None) -> str:
    """``5 -> "5s"``, ``65 -> "1m05s"``, ``3725 -> "1h02m05s"``; unknown (None / nan / inf) -> ``"--"``."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def format_bar(done: int, total: int, width: int = 10) -> str:
    """``format_bar(3, 10) == "[###.......]"``; clamps to [0, total]."""
    # Integer arithmetic: int(57 / 100 * 100) is 56 in floating point.
    n = 0 if total <= 0 else width * min(max(done, 0), total) // total
    return "[" + "#" * n + "." * (width - n) + "]"


def format_value(value: Any) -> str:
    """Short, readable number: 3 significant digits, no exponent between 1e-3 and 1e6."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    a = abs(value)
    if a == 0:
        return "0"
    if a < 1e-3 or a >= 1e6:
        return f"{value:.2e}"
    if a >= 1000:
        return f"{value:.0f}"
    return f"{value:.3g}"


def format_line(
    desc: str, step: int, total: int, eta_s: float | None, metrics: Mapping[str, Any], width: int = 10
) -> str:
    """The full progress line (see the module docstring)."""
    pct = 0 if total <= 0 else 100 * min(max(step, 0), total) // total
    parts = [f"{desc}  {format_bar(step, total, width)} {step}/{total}  {pct}%  eta {format_eta(eta_s)}"]
    kv = " ".join(f"{k}={format_value(v)}" for k, v in metrics.items())
    if kv:
        parts.append(kv)
    return "  ".join(parts)


class Progress:
    """Progress of ``total`` steps. Call :meth:`update` after each step with the number of steps done.

    ETA = (moving average of the last ``window`` step times) × steps left. The first update's interval
    is excluded: it contains JIT compilation and would inflate the estimate for the whole run.
    ``keys`` picks (and orders) the metrics shown; ``None`` shows every metric passed.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        every: int = 10,
        stream: TextIO | None = None,
        keys: Sequence[str] | None = None,
        window: int = 20,
        width: int = 10,
        clock=time.monotonic,
    ):
        self.total, self.desc, self.every, self.keys, self.width = total, desc, max(1, every), keys, width
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._clock = clock
        self._start = clock()
        self._last_time: float | None = None  # None until the first (compile) update is seen
        self._last_step = 0
        self._step_times: collections.deque[float] = collections.deque(maxlen=window)
        self._drawn = 0  # length of the line on screen, to blank leftovers on redraw
        self._closed = False

    def eta(self, step: int) -> float | None:
        """Seconds left after ``step`` steps, or None before a post-compile step time is known."""
        if not self._step_times:
            return None
        return sum(self._step_times) / len(self._step_times) * max(0, self.total - step)

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> None:
        now = self._clock()
        first = self._last_time is None
        if self._last_time is not None and step > self._last_step:
            self._step_times.append((now - self._last_time) / (step - self._last_step))
        self._last_time, self._last_step = now, step
        shown = dict(metrics or {})
        if self.keys is not None:
            shown = {k: shown[k] for k in self.keys if k in shown}
        line = format_line(self.desc, step, self.total, self.eta(step), shown, self.width)
        if self.tty:
            # A wrapped line cannot be redrawn with \r: cut it to the terminal width.
            cols = shutil.get_terminal_size((120, 24)).columns - 1
            line = line[:cols]
            self.stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
            self._drawn = len(line)
            self.stream.flush()
        elif first or step % self.every == 0 or step >= self.total:  # first: a sign of life after compile
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Ends the line and prints the elapsed time (once)."""
        if self._closed:
            return
        self._closed = True
        elapsed = format_eta(self._clock() - self._start)
        self.stream.write(("\n" if self.tty and self._drawn else "") + f"{self.desc}  done in {elapsed}\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
