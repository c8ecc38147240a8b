"""The tool protocol and the records that flow between parser, executor and rollout engine.

* :class:`Tool` — anything with ``name``, ``description``, ``parameters`` (a JSON schema of its
  arguments) and ``call(args) -> ToolResult``. Tools never raise on bad model input: they return a
  result whose status says what went wrong.
* :class:`ParsedCall` / :class:`InvalidCall` — what a call syntax extracts from model text.
* :class:`ToolResult` — status (:class:`toolrl_jax.types.ToolStatus`) + the text the model sees.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from toolrl_jax.types import ToolStatus


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """Outcome of one call. ``text`` is what the model is shown (before the syntax wraps it)."""

    status: ToolStatus
    text: str
    truncated: bool = False  # some output was cut (capture cap or max_result_chars)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is ToolStatus.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "status": ToolStatus(self.status).name.lower(),
            "text": self.text,
            "truncated": self.truncated,
            "elapsed_s": round(self.elapsed_s, 4),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ToolResult:
        return cls(
            status=ToolStatus[str(d["status"]).upper()],
            text=str(d["text"]),
            truncated=bool(d.get("truncated", False)),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
        )


@dataclasses.dataclass(frozen=True)
class ParsedCall:
    """A well-formed call. ``start``/``end`` are character offsets of the call in the parsed text
    (``text[start:end]`` is the whole call including its tags); ``raw`` is that substring."""

    name: str
    arguments: Mapping[str, Any]
    raw: str
    start: int
    end: int

    @property
    def arguments_json(self) -> str:
        """Canonical JSON of the arguments (what ToolCallRecord.arguments stores)."""
        return json.dumps(dict(self.arguments), sort_keys=True, ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class InvalidCall:
    """A call the model tried to make but got wrong. ``message`` is shown to the model."""

    message: str
    raw: str
    start: int
    end: int
    name: str = ""  # the tool name when it could be read

    @property
    def arguments_json(self) -> str:
        return json.dumps({"raw": self.raw}, ensure_ascii=False)

    def to_result(self) -> ToolResult:
        return ToolResult(ToolStatus.INVALID_CALL, self.message)


@runtime_checkable
class Tool(Protocol):
    """What the executor runs. ``parameters`` is a JSON schema object of the arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def call(self, args: Mapping[str, Any]) -> ToolResult: ...


def function_spec(tool: Tool) -> dict[str, Any]:
    """OpenAI/Hermes function spec, the form chat templates take (``apply_chat_template(tools=…)``)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def string_argument(args: Mapping[str, Any], key: str, tool: str) -> str | ToolResult:
    """Returns ``args[key]`` as a string, or an INVALID_CALL result that says what is wrong."""
    if not isinstance(args, Mapping):
        return ToolResult(
            ToolStatus.INVALID_CALL,
            f"{tool}: arguments must be an object like {{\"{key}\": \"...\"}}, "
            f"got {type(args).__name__}",
        )
    if key not in args:
        got = ", ".join(sorted(map(str, args))) or "none"
        return ToolResult(
            ToolStatus.INVALID_CALL,
            f"{tool}: missing required argument '{key}' (got arguments: {got})",
        )
    value = args[key]
    if not isinstance(value, str):
        return ToolResult(
            ToolStatus.INVALID_CALL,
            f"{tool}: argument '{key}' must be a string, got {type(value).__name__}",
        )
    return value


def truncate_middle(text: str, max_chars: int) -> tuple[str, bool]:
    """Cuts ``text`` to at most ``max_chars`` keeping head and tail (errors live at the end)."""
    if len(text) <= max_chars:
        return text, False
    marker = f"\n...[{len(text) - max_chars} characters truncated]...\n"
    keep = max(max_chars - len(marker), 0)
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else ""), True
