"""TensorBoard scalars through ``tensorboardX`` (no TensorFlow), and a small reader for tests and tools.

The writer is ``tensorboardX.SummaryWriter``; this module only adds what the run directory needs:
a file name that two writers in one second cannot share, ``purge_step`` on resume, a type check
that names the bad tag, and a flush per step. The reader decodes the TFRecord framing with
tensorboardX's CRC and its ``event_pb2`` classes, so it needs neither TensorFlow nor tensorboard.

tensorboardX is imported where it is used: importing it imports torch when torch is installed
(about a second), which a run that logs no TensorBoard scalars should not pay.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import struct
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tensorboardX.proto.event_pb2 import Event

EVENTS_GLOB = "events.out.tfevents.*"


class _DropNonFiniteWarning(logging.Filter):
    """tensorboardX warns "NaN or Inf found in input tensor." for every such scalar; a diverged run
    would print it each step. The value is still written, and metrics.jsonl names it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NaN or Inf found" not in record.getMessage()


_NONFINITE_FILTER = _DropNonFiniteWarning()
_WRITERS = itertools.count()  # this process's writers, for unique file names


class TensorBoardWriter:
    """Scalar summaries in a fresh ``events.out.tfevents.<s>.<host>.<ns>.<pid>.<n>`` file in ``logdir``.

    tensorboardX writes from a background thread; :meth:`scalars` flushes after each call and the
    thread flushes at least every ``flush_secs``, so a killed run loses about a second of points
    at most. :meth:`close` drains the queue, so everything is on disk after it returns.

    ``start_step``: when a run resumes from a checkpoint at step s, tensorboardX's ``purge_step``
    writes a ``SessionLog.START`` event at s, which tells TensorBoard to drop the points with
    step >= s that the crashed run wrote after its last checkpoint (no fold-back in the curves).
    """

    def __init__(self, logdir: str, *, start_step: int | None = None, flush_secs: int = 1):
        from tensorboardX import SummaryWriter

        logging.getLogger("tensorboardX.x2num").addFilter(_NONFINITE_FILTER)  # no-op when already added
        os.makedirs(logdir, exist_ok=True)
        # tensorboardX names files by the second and opens them with "wb": without a unique suffix
        # two writers started in the same second (a restart, train + eval) would clobber each other.
        # Nanoseconds first, so that name order stays creation order within a second.
        suffix = f".{time.time_ns()}.{os.getpid()}.{next(_WRITERS)}"
        self._w = SummaryWriter(
            logdir, purge_step=start_step, flush_secs=flush_secs, filename_suffix=suffix
        )
        (self.path,) = glob.glob(os.path.join(glob.escape(logdir), EVENTS_GLOB + glob.escape(suffix)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Writes ``values`` (tag -> number) at ``step``. Raises TypeError naming a non-numeric tag."""
        if self._w is None:
            raise ValueError(f"TensorBoardWriter for {self.path} is closed")
        clean = {}
        for tag, v in values.items():
            try:
                clean[str(tag)] = float(v)
            except (TypeError, ValueError) as e:
                raise TypeError(f"TensorBoard scalar {tag!r} is not a number: {v!r}") from e
        for tag, v in clean.items():
            self._w.add_scalar(tag, v, global_step=int(step))
        if clean:
            self._w.flush()

    def flush(self) -> None:
        if self._w is not None:
            self._w.flush()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Reader: TFRecord framing  uint64 len | uint32 masked_crc(len) | data | uint32 masked_crc(data).


def _iter_records(path: str) -> Iterator[bytes]:
    """Yields record payloads; stops quietly at a truncated tail, raises on a CRC mismatch."""
    from tensorboardX.record_writer import masked_crc32c

    with open(path, "rb") as f:
        buf = f.read()
    pos = 0
    while pos + 12 <= len(buf):
        header = buf[pos : pos + 8]
        (n,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", buf[pos + 8 : pos + 12])
        if hcrc != masked_crc32c(header):
            raise ValueError(f"{path}: corrupt record length at byte {pos} (CRC mismatch)")
        end = pos + 12 + n + 4
        if end > len(buf):
            return  # the record in flight when the writer was killed
        data = buf[pos + 12 : pos + 12 + n]
        (dcrc,) = struct.unpack("<I", buf[end - 4 : end])
        if dcrc != masked_crc32c(data):
            raise ValueError(f"{path}: corrupt record data at byte {pos} (CRC mismatch)")
        yield data
        pos = end


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(glob.escape(path), EVENTS_GLOB)))
    return [path]


def read_events(path: str) -> list[Event]:
    """Every ``Event`` in an events file, or in each events file of a directory (name order, i.e.
    creation time). Validates CRCs; ignores a truncated last record."""
    from tensorboardX.proto.event_pb2 import Event

    return [Event.FromString(data) for fname in _files(path) for data in _iter_records(fname)]


def read_scalars(path: str) -> list[tuple[int, str, float]]:
    """All ``(step, tag, value)`` scalars (``simple_value`` summaries) of :func:`read_events`."""
    return [
        (ev.step, v.tag, v.simple_value)
        for ev in read_events(path)
        if ev.HasField("summary")
        for v in ev.summary.value
        if v.WhichOneof("value") == "simple_value"
    ]
