"""Minimal safetensors reader/writer on NumPy memory maps, with bfloat16 support.

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{dtype, shape, data_offsets}``, then the raw bytes. We read through ``np.memmap`` so loading a
sharded model only touches the slices each device needs, and handle bf16 via ``ml_dtypes``
(``safetensors.numpy`` has no bf16 in NumPy).
"""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np

_DTYPES = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    pass


def read_header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except json.JSONDecodeError as e:
            raise SafetensorsError(f"{path}: corrupt safetensors header: {e}") from e
    header.pop("__metadata__", None)
    return header, 8 + n


def open_tensors(path: str) -> dict[str, np.ndarray]:
    """Returns lazily-read (memory-mapped) arrays for every tensor in the file."""
    header, base = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        dtype = _DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise SafetensorsError(f"{path}: tensor '{name}' byte size does not match its shape")
        out[name] = mm[base + start : base + end].view(dtype).reshape(shape)
    return out


def save_tensors(path: str, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    header: dict = {}
    offset = 0
    arrays = {}
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in _NAMES:
            raise SafetensorsError(f"cannot save tensor '{name}' of dtype {arr.dtype}")
        header[name] = {
            "dtype": _NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays[name] = arr
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(arrays):
            f.write(arrays[name].tobytes())
