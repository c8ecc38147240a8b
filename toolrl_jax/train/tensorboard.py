"""TensorBoard scalar event files, written and read by hand (no TensorFlow, no tensorboard package).

Why by hand: the project must install and run on CPU without TensorFlow, and the scalar subset of the
format is tiny. An events file is a sequence of TFRecord-framed records::

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

(all little-endian), where ``data`` is a serialized ``tensorflow.Event`` protobuf. We encode the few
fields we need:

    Event      wall_time double = 1, step int64 = 2, file_version string = 3, summary Summary = 5,
               session_log SessionLog = 7
    Summary    repeated value Value = 1
    Value      tag string = 1, simple_value float = 2
    SessionLog status enum = 1 (START = 1)

The first record of a file carries ``file_version = "brain.Event:2"``, which TensorBoard requires.
"""

from __future__ import annotations

import glob
import math
import os
import socket
import struct
import time
from collections.abc import Iterator, Mapping

# ---------------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table driven.

_CRC32C_POLY = 0x82F63B78


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (the checksum TFRecord framing uses)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotating and offsetting avoids CRCs of data that itself contains CRCs."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------
# Protobuf wire encoding (only the wire types we use).

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_F32_MAX = 3.4028234663852886e38


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 is encoded as its 64-bit two's complement (10 bytes)
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(payload)) + payload


def _f32(value: float) -> bytes:
    # struct refuses finite doubles outside float32 range; TensorBoard would show them as inf anyway.
    if math.isfinite(value) and abs(value) > _F32_MAX:
        value = math.copysign(math.inf, value)
    return struct.pack("<f", value)


def encode_event(
    wall_time: float,
    step: int,
    *,
    scalars: Mapping[str, float] | None = None,
    file_version: str | None = None,
    session_start: bool = False,
) -> bytes:
    """Serializes one ``Event`` protobuf."""
    out = _key(1, _FIXED64) + struct.pack("<d", wall_time) + _key(2, _VARINT) + _varint(int(step))
    if file_version is not None:
        out += _len_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _len_field(1, _len_field(1, tag.encode()) + _key(2, _FIXED32) + _f32(float(v)))
            for tag, v in scalars.items()
        )
        out += _len_field(5, values)
    if session_start:
        out += _len_field(7, _key(1, _VARINT) + _varint(1))  # field 6 is the deprecated log_message
    return out


def frame_record(data: bytes) -> bytes:
    """TFRecord framing of one serialized record."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# ---------------------------------------------------------------------------------------------------
# Writer.


class TensorBoardWriter:
    """Appends scalar summaries to a fresh ``events.out.tfevents.<time>.<host>`` file in ``logdir``.

    One ``Event`` per :meth:`scalars` call holds all of that step's values. Every call is flushed:
    a step takes seconds, a flush microseconds, and a killed run then loses at most the record in
    flight (which :func:`read_scalars`, like TensorBoard, skips).

    ``start_step``: when a run resumes from a checkpoint at step s, a ``SessionLog.START`` event at s
    tells TensorBoard to drop the points with step >= s that the crashed run wrote after its last
    checkpoint, so the curves do not fold back on themselves.
    """

    def __init__(self, logdir: str, *, start_step: int | None = None):
        os.makedirs(logdir, exist_ok=True)
        base = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}")
        path, n = base, 0
        while os.path.exists(path):  # two writers in one second (restart, or train + eval) must not share
            n += 1
            path = f"{base}.{os.getpid()}.{n}"
        self.path = path
        self._f = open(path, "xb")
        self._write(encode_event(time.time(), 0, file_version="brain.Event:2"))
        if start_step is not None:
            self._write(encode_event(time.time(), start_step, session_start=True))
        self.flush()

    def _write(self, data: bytes) -> None:
        if self._f is None:
            raise ValueError(f"TensorBoardWriter for {self.path} is closed")
        self._f.write(frame_record(data))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Writes ``values`` (tag -> number) at ``step``. Raises TypeError naming a non-numeric tag."""
        clean = {}
        for tag, v in values.items():
            try:
                clean[str(tag)] = float(v)
            except (TypeError, ValueError) as e:
                raise TypeError(f"TensorBoard scalar {tag!r} is not a number: {v!r}") from e
        if clean:
            self._write(encode_event(time.time(), step, scalars=clean))
            self.flush()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Reader.


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yields ``(field, wire_type, value)``; value is int, bytes (LEN / fixed) as on the wire."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wt == _FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wt == _LEN:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wt == _FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        yield field, wt, value


def _iter_records(path: str) -> Iterator[bytes]:
    """Yields record payloads; stops quietly at a truncated tail, raises on a CRC mismatch."""
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


def _decode_scalars(event: bytes) -> tuple[int, list[tuple[str, float]]]:
    step, out = 0, []
    for field, wt, value in _fields(event):
        if field == 2 and wt == _VARINT:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 5 and wt == _LEN:
            for vf, vwt, v in _fields(value):
                if vf != 1 or vwt != _LEN:
                    continue
                tag, simple = None, None
                for f, w, x in _fields(v):
                    if f == 1 and w == _LEN:
                        tag = x.decode()
                    elif f == 2 and w == _FIXED32:
                        (simple,) = struct.unpack("<f", x)
                if tag is not None and simple is not None:  # non-scalar summaries are skipped
                    out.append((tag, simple))
    return step, out


def read_scalars(path: str) -> list[tuple[int, str, float]]:
    """All ``(step, tag, value)`` scalars in an events file, or in every events file of a directory
    (in file-name order, i.e. creation time). Validates CRCs; ignores a truncated last record."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "events.out.tfevents.*")))
    else:
        files = [path]
    out = []
    for fname in files:
        for data in _iter_records(fname):
            step, values = _decode_scalars(data)
            out.extend((step, tag, v) for tag, v in values)
    return out
