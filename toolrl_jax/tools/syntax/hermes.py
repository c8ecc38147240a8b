"""Hermes / Qwen function calling: ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, answered
with ``<tool_response>…</tool_response>`` (the format Qwen2.5's chat template emits and expects).

With a chat template the response normally sits in its own user turn; set ``tools.result_template``
to e.g. ``"<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n{result}\\n</tool_response><|im_end|>"
"\\n<|im_start|>assistant\\n"`` to append exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from toolrl_jax.tools.base import InvalidCall, ParsedCall
from toolrl_jax.tools.syntax.base import CallSyntax

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesSyntax(CallSyntax):
    name = "hermes"
    call_end_strings = (CLOSE,)
    default_result_template = "\n<tool_response>\n{result}\n</tool_response>\n"

    def parse_last_call(self, text: str) -> ParsedCall | InvalidCall | None:
        close_pos = text.rfind(CLOSE)
        open_pos = text.rfind(OPEN)
        if open_pos > close_pos:
            return InvalidCall(
                f"unclosed {OPEN}: the call was cut off before {CLOSE} (token budget reached?); "
                "nothing was run",
                text[open_pos:], open_pos, len(text),
            )
        if close_pos < 0:
            return None
        end = close_pos + len(CLOSE)
        start = text.rfind(OPEN, 0, close_pos)
        if start < 0:
            return InvalidCall(
                f"{CLOSE} without an opening {OPEN}", text[max(close_pos - 200, 0) : end],
                close_pos, end,
            )
        raw = text[start:end]
        return self._parse_body(text[start + len(OPEN) : close_pos], raw, start, end)

    def _parse_body(self, body: str, raw: str, start: int, end: int) -> ParsedCall | InvalidCall:
        def invalid(message: str, name: str = "") -> InvalidCall:
            return InvalidCall(message, raw, start, end, name)

        body = body.strip()
        if not body:
            return invalid(f'empty {OPEN}: write {{"name": ..., "arguments": {{...}}}}')
        try:
            # strict=False lets raw newlines/tabs stand inside strings: models write code that way.
            obj: Any = json.loads(body, strict=False)
        except json.JSONDecodeError as e:
            return invalid(f"invalid JSON in {OPEN}: {e.msg} at line {e.lineno} column {e.colno}")
        if self.open_names and isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]  # parallel calls in one block: the first names the call (all are graded)
        if not isinstance(obj, dict):
            return invalid(f'{OPEN} must hold a JSON object {{"name": ..., "arguments": {{...}}}}, '
                           f"got {type(obj).__name__}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            return invalid(f'{OPEN} object needs a string "name" (the tool to call)')
        if name not in self.tool_names and not self.open_names:
            return self._unknown_tool(name, raw, start, end)
        # Llama-3.1 style models write "parameters"; a JSON string of arguments is also common.
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args, strict=False) if args.strip() else {}
            except json.JSONDecodeError as e:
                return invalid(f'"arguments" is a string but not valid JSON: {e.msg}', name)
        if not isinstance(args, dict):
            return invalid(f'"arguments" must be a JSON object, got {type(args).__name__}', name)
        return ParsedCall(name, args, raw, start, end)

    def final_turn_calls(self, text: str) -> list[ParsedCall | InvalidCall]:
        """As the base class, but a block holding a JSON list is that many (parallel) calls."""
        out: list[ParsedCall | InvalidCall] = []
        for call in super().final_turn_calls(text):
            body = call.raw[len(OPEN):-len(CLOSE)].strip() if call.raw.endswith(CLOSE) else ""
            if isinstance(call, ParsedCall) and body.startswith("["):
                items = json.loads(body, strict=False)
                out.extend(self._parse_body(json.dumps(o), call.raw, call.start, call.end)
                           if isinstance(o, dict) else InvalidCall("not a call object", call.raw,
                                                                   call.start, call.end)
                           for o in items)
            else:
                out.append(call)
        return out

    def describe_functions(self, specs: Sequence[Mapping[str, Any]]) -> str:
        return self.describe({}, specs)

    def describe(self, tools: Mapping[str, str], specs: Sequence[Mapping[str, Any]] = ()) -> str:
        """Qwen2.5's tool system text; ``specs`` are function specs (``base.function_spec``)."""
        listed = "\n".join(json.dumps(dict(s), ensure_ascii=False) for s in specs) or "\n".join(
            json.dumps({"name": n, "description": d}) for n, d in tools.items()
        )
        return (
            "You may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{listed}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            f'{OPEN}{CLOSE} XML tags:\n{OPEN}\n{{"name": <function-name>, "arguments": '
            f"<args-json-object>}}\n{CLOSE}"
        )
