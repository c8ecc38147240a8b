"""XML-tag calls: ``<python>code</python>``, ``<search>query</search>``,
``<calculator>expr</calculator>``; results come back in ``<result>…</result>`` and the final answer
is ``<answer>…</answer>`` (the format of Search-R1, ToRL and most tool-RL papers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from toolrl_jax.tools.base import InvalidCall, ParsedCall
from toolrl_jax.tools.syntax.base import (
    DEFAULT_ARG_KEYS,
    CallSyntax,
    body_arguments,
    empty_call,
)
from toolrl_jax.verifiers import AnswerStyle


class XmlSyntax(CallSyntax):
    """Tag name = tool name. Tags of known but disabled tools still stop generation, so the model
    is told "unknown tool" instead of rambling on past its call."""

    name = "xml"
    default_result_template = "\n<result>\n{result}\n</result>\n"

    def __init__(
        self,
        tool_names: Sequence[str],
        *,
        arg_keys: Mapping[str, str] | None = None,
        result_template: str = "",
        answer_style: AnswerStyle = "tag",
    ):
        super().__init__(tool_names, result_template=result_template, answer_style=answer_style)
        self.arg_keys = {**DEFAULT_ARG_KEYS, **(arg_keys or {})}
        # Every tag we recognise: enabled tools first (their end strings are listed first).
        self.tags = tuple(dict.fromkeys([*self.tool_names, *self.arg_keys]))
        self.call_end_strings = tuple(f"</{t}>" for t in self.tags)

    def parse_last_call(self, text: str) -> ParsedCall | InvalidCall | None:
        # The call the turn ends with is the one whose closing tag is rightmost.
        close_pos, tag = max(((text.rfind(f"</{t}>"), t) for t in self.tags), default=(-1, ""))
        open_pos, open_tag = max(((text.rfind(f"<{t}>"), t) for t in self.tags), default=(-1, ""))
        if open_pos > close_pos:  # an opening tag after the last close: cut off mid-call
            raw = text[open_pos:]
            return InvalidCall(
                f"unclosed <{open_tag}> tag: the call was cut off before </{open_tag}> "
                "(token budget reached?); nothing was run",
                raw, open_pos, len(text), open_tag,
            )
        if close_pos < 0:
            return None
        end = close_pos + len(tag) + 3
        start = text.rfind(f"<{tag}>", 0, close_pos)
        if start < 0:
            raw = text[max(close_pos - 200, 0) : end]
            return InvalidCall(
                f"</{tag}> without an opening <{tag}>: write <{tag}>...</{tag}>",
                raw, close_pos, end, tag,
            )
        raw = text[start:end]
        if tag not in self.tool_names:
            return self._unknown_tool(tag, raw, start, end)
        args = body_arguments(tag, text[start + len(tag) + 2 : close_pos], self.arg_keys[tag])
        if not next(iter(args.values())):
            return empty_call(tag, f"put the input between <{tag}> and </{tag}>", raw, start, end)
        return ParsedCall(tag, args, raw, start, end)

    def describe(self, tools: Mapping[str, str]) -> str:
        lines = ["You can call tools by writing a tag; the result comes back in <result></result>."]
        for name, desc in tools.items():
            key = self.arg_keys.get(name, "input")
            lines.append(f"- <{name}>{key}</{name}>: {desc}")
        lines.append("Put the final answer in <answer></answer>.")
        return "\n".join(lines)
