"""Record/replay of tool results, keyed by tool name + arguments, in a JSONL file.

``record`` runs every call and appends ``{"key", "tool", "arguments", "result"}`` per call (the
result as the model saw it, after truncation); ``replay`` answers from the file and never runs a
tool, so a rollout can be reproduced exactly, on a machine without the tools, or offline. A replay
miss is an ``error`` result that says so: the model sees it, nothing crashes. On duplicate keys
the last line wins (a re-recorded call overrides the older one).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from toolrl_jax.tools.base import ToolResult
from toolrl_jax.types import ToolStatus


def cache_key(tool: str, arguments: Mapping[str, Any]) -> str:
    """Stable key: sha256 of canonical JSON (sorted keys), independent of argument order."""
    blob = json.dumps({"tool": tool, "arguments": dict(arguments)}, sort_keys=True,
                      ensure_ascii=False, default=repr)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ToolCache:
    def __init__(self, path: str, mode: str):
        if mode not in ("record", "replay"):
            raise ValueError(f"tool cache mode must be 'record' or 'replay', got {mode!r}")
        self.path, self.mode = path, mode
        self._entries: dict[str, ToolResult] = {}
        self._lock = threading.Lock()
        if mode == "replay" and not os.path.exists(path):
            raise FileNotFoundError(f"tool replay cache {path!r} does not exist; record it first "
                                    "with tools.cache.mode='record'")
        if os.path.exists(path):
            self._load()
        if mode == "record":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    self._entries[row["key"]] = ToolResult.from_json(row["result"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{self.path}:{lineno}: bad tool cache line ({e})") from None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tool: str, arguments: Mapping[str, Any]) -> ToolResult | None:
        with self._lock:
            return self._entries.get(cache_key(tool, arguments))

    def put(self, tool: str, arguments: Mapping[str, Any], result: ToolResult) -> None:
        key = cache_key(tool, arguments)
        line = json.dumps(
            {"key": key, "tool": tool, "arguments": dict(arguments), "result": result.to_json()},
            ensure_ascii=False, default=repr,
        )
        with self._lock:
            self._entries[key] = result
            # Append + flush per call: a crash loses at most the call in flight.
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def miss(self, tool: str, arguments: Mapping[str, Any]) -> ToolResult:
        """The result for a replay miss: an error the model sees, naming the key."""
        key = cache_key(tool, arguments)
        return ToolResult(
            ToolStatus.ERROR,
            f"replay cache {self.path!r} has no result for tool '{tool}' with these arguments "
            f"(key {key[:16]}); re-record with tools.cache.mode='record'",
        )
