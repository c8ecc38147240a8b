"""Minimal safetensors reader/writer on NumPy memory maps, with bfloat16 support.

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{dtype, shape, data_offsets}``, then the raw bytes. We read through ``np.memmap`` so loading a
sharded model only touches the slices each device needs, and handle bf16 via ``ml_dtypes``
(``safetensors.numpy`` has no bf16 in NumPy).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

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
    arrays = {name: np.ascontiguousarray(arr) for name, arr in tensors.items()}
    write_tensors(path, {name: (a.dtype, a.shape) for name, a in arrays.items()},
                  arrays.__getitem__, metadata)


def write_tensors(path: str, specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
                  produce: Callable[[str], np.ndarray], metadata: dict | None = None) -> None:
    """Streams a safetensors file: the header from ``specs`` (name → (dtype, shape)), then
    ``produce(name)`` for each name in sorted order, each written as soon as it is produced.

    Only one tensor is in host memory at a time (how ``save_hf`` exports a model larger than a
    host's RAM). Byte-identical to writing the same tensors at once: names sorted, data
    contiguous in that order, header padded with spaces to 8-byte-aligned data.
    """
    header: dict = {}
    offset = 0
    for name in sorted(specs):
        dtype, shape = np.dtype(specs[name][0]), tuple(int(d) for d in specs[name][1])
        if dtype not in _NAMES:
            raise SafetensorsError(f"cannot save tensor '{name}' of dtype {dtype}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(specs):
            arr = np.ascontiguousarray(produce(name))
            info = header[name]
            if arr.dtype != _DTYPES[info["dtype"]] or list(arr.shape) != info["shape"]:
                raise SafetensorsError(f"tensor '{name}' is {arr.dtype}{list(arr.shape)}, the "
                                       f"header says {info['dtype']}{info['shape']}")
            f.write(arr.tobytes())
