"""Markdown-fence calls: a fenced block whose info string names a tool is a call::

    ```python
    print(2 + 2)
    ```

and the result comes back in a fence with a configurable marker (```` ```output ````). Blocks in
other languages (``bash``, ``text``, the result marker itself) are ordinary Markdown, not calls. A
closing fence is ``` on its own line (up to three spaces of indent, as in CommonMark); the end
string ``` also starts every opening fence, so the engine must confirm a stop with
``find_call_end``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from toolrl_jax.tools.base import InvalidCall, ParsedCall
from toolrl_jax.tools.syntax.base import (
    DEFAULT_ARG_KEYS,
    CallSyntax,
    body_arguments,
    empty_call,
)
from toolrl_jax.verifiers import AnswerStyle

# A fence line: optional indent, three or more backticks, optional info string. ``$`` in MULTILINE
# mode also matches at the very end of the text, where generation stopped on the closing fence.
_FENCE = re.compile(r"^ {0,3}(`{3,})[ \t]*([^`\s]*)[^`\n]*$", re.MULTILINE)

LANGUAGE_ALIASES: Mapping[str, str] = {"py": "python", "python3": "python", "calc": "calculator"}


class MarkdownSyntax(CallSyntax):
    name = "markdown"
    call_end_strings = ("```",)

    def __init__(
        self,
        tool_names: Sequence[str],
        *,
        result_marker: str = "output",
        arg_keys: Mapping[str, str] | None = None,
        result_template: str = "",
        answer_style: AnswerStyle = "tag",
    ):
        self.result_marker = result_marker
        self.default_result_template = f"\n```{result_marker}\n{{result}}\n```\n"
        super().__init__(tool_names, result_template=result_template, answer_style=answer_style)
        self.arg_keys = {**DEFAULT_ARG_KEYS, **(arg_keys or {})}
        self.languages = set(self.tool_names) | set(self.arg_keys)

    def _tool_of(self, info: str) -> str | None:
        lang = LANGUAGE_ALIASES.get(info.lower(), info.lower())
        return lang if lang in self.languages else None

    def _blocks(self, text: str):
        """Yields (info, fence_start, body_start, close_start or None, end) for each block."""
        open_block = None
        for m in _FENCE.finditer(text):
            if open_block is None:
                body_start = min(m.end() + 1, len(text))  # skip the newline after the fence
                open_block = (m.group(2), m.start(), body_start)
            elif m.group(2) == "":  # a bare fence closes; a fence with an info string is content
                yield (*open_block, m.start(), m.end())
                open_block = None
        if open_block is not None:
            yield (*open_block, None, len(text))

    def find_call_end(self, text: str, start: int = 0) -> int | None:
        # Fences must be judged on whole lines: cutting the text after a ``` that goes on as
        # ```python would turn an opening fence into a closing one.
        for info, _, _, close_start, end in self._blocks(text):
            if close_start is not None and end >= start and self._tool_of(info) is not None:
                return end
        return None

    def parse_last_call(self, text: str) -> ParsedCall | InvalidCall | None:
        blocks = list(self._blocks(text))
        if not blocks:
            return None
        info, start, body_start, close_start, end = blocks[-1]
        tool = self._tool_of(info)
        if tool is None:  # ordinary code block, or a result block echoed by the model
            return None
        raw = text[start:end]
        if close_start is None:
            return InvalidCall(
                f"unclosed ```{info} block: the call was cut off before the closing ``` "
                "(token budget reached?); nothing was run",
                raw, start, end, tool,
            )
        if tool not in self.tool_names:
            return self._unknown_tool(tool, raw, start, end)
        body = text[body_start:close_start] if close_start > body_start else ""
        args = body_arguments(tool, body, self.arg_keys[tool])
        if not next(iter(args.values())):
            return empty_call(tool, f"write the input inside the ```{info} block", raw, start, end)
        return ParsedCall(tool, args, raw, start, end)

    def describe(self, tools: Mapping[str, str]) -> str:
        lines = [
            "You can call a tool with a fenced block named after it; the result comes back in a "
            f"```{self.result_marker} block."
        ]
        for name, desc in tools.items():
            lines.append(f"- ```{name} ... ```: {desc}")
        lines.append("Put the final answer in <answer></answer>.")
        return "\n".join(lines)
