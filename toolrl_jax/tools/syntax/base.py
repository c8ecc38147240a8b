"""The interface every call syntax gives the rollout engine, and helpers the syntaxes share.

How the engine uses a syntax (one model turn = the text sampled since the last tool result):

1. Generate until the turn text contains one of ``stop_strings`` (``call_end_strings`` +
   ``answer_end_strings``) or the budget runs out. End strings are a cheap pre-filter: a BPE token
   may carry characters past the end string, and for Markdown the closing fence ``\u0060\u0060\u0060``
   also starts ordinary code blocks.
2. ``find_call_end(turn_text)`` confirms: it returns the character offset just past the first
   complete tool call, or None (keep generating; e.g. a fence that closed a non-tool block).
3. ``parse_last_call(turn_text[:end])`` returns the :class:`ParsedCall` to execute, an
   :class:`InvalidCall` (unknown tool, bad JSON, empty code, or, at the token budget, a call left
   open) whose message goes back to the model, or None (no call: the turn is plain text).
4. Append ``format_result(result)`` to the context and resume.
5. A turn with no call ends the trajectory when it holds a final answer:
   ``toolrl_jax.verifiers.extract_answer(turn_text, syntax.answer_style)`` is not None.

Parsers never raise on model output; anything malformed becomes an InvalidCall.
"""

from __future__ import annotations

import abc
import textwrap
from collections.abc import Mapping, Sequence

from toolrl_jax.tools.base import InvalidCall, ParsedCall, ToolResult
from toolrl_jax.verifiers import AnswerStyle

# Argument that carries the call body for the tools shipped (XML and Markdown calls are one text
# block; Hermes calls name their arguments themselves).
DEFAULT_ARG_KEYS: Mapping[str, str] = {
    "python": "code",
    "search": "query",
    "calculator": "expression",
}


class CallSyntax(abc.ABC):
    """One way of writing tool calls in text. Subclasses set ``name``, ``call_end_strings``."""

    name: str = ""
    call_end_strings: tuple[str, ...] = ()
    answer_end_strings: tuple[str, ...] = ("</answer>",)
    default_result_template: str = "{result}"

    def __init__(
        self,
        tool_names: Sequence[str],
        *,
        result_template: str = "",
        answer_style: AnswerStyle = "tag",
        open_names: bool = False,
    ):
        self.tool_names = tuple(tool_names)
        # True: a well-formed call of any name parses (function-calling items bring their own
        # functions; the engine ends the row at a call of one of them, the executor refuses any
        # other unknown name with the same "unknown tool" message).
        self.open_names = open_names
        self.result_template = result_template or self.default_result_template
        if "{result}" not in self.result_template:
            raise ValueError(f"result_template must contain '{{result}}': {self.result_template!r}")
        self.answer_style = answer_style

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Every string at which generation should pause: call ends, then answer ends."""
        if self.answer_style == "boxed":
            return self.call_end_strings
        return self.call_end_strings + self.answer_end_strings

    @abc.abstractmethod
    def parse_last_call(self, text: str) -> ParsedCall | InvalidCall | None:
        """The last call in ``text`` (the current turn), an InvalidCall, or None if no call."""

    def find_call_end(self, text: str, start: int = 0) -> int | None:
        """Offset just past the first complete call that ends at or after ``start``, else None.

        Generic: try each end-string occurrence in order and keep the first one that closes a
        call. Turns are short (hundreds of tokens), so the quadratic worst case is irrelevant.
        """
        candidates = sorted(
            {
                i + len(s)
                for s in self.call_end_strings
                for i in _find_all(text, s, max(start - len(s), 0))
                if i + len(s) >= start
            }
        )
        for end in candidates:
            call = self.parse_last_call(text[:end])
            if call is not None and call.end == end:
                return end
        return None

    def final_turn_calls(self, text: str) -> list[ParsedCall | InvalidCall]:
        """Every call of the last turn of ``text`` (after the last tool result), in order: a turn
        may hold several (parallel) calls. Used to grade function-calling answers."""
        marker = self.result_template.split("{result}")[-1].strip()
        start = text.rfind(marker) + len(marker) if marker and marker in text else 0
        calls: list[ParsedCall | InvalidCall] = []
        pos, search = start, start
        while (end := self.find_call_end(text, search)) is not None:
            call = self.parse_last_call(text[:end])
            if call is not None:
                calls.append(call)
            pos, search = end, end + 1
        tail = self.parse_last_call(text)
        if isinstance(tail, InvalidCall) and tail.start >= pos:  # left open at the budget
            calls.append(tail)
        return calls

    def answer_calls(self, text: str) -> list:
        """The final turn's calls as the verifier reads them (``{name: arguments}``; None for a
        call that does not decode): ``verifiers.grade(..., parse_calls=syntax.answer_calls)``."""
        return [{c.name: dict(c.arguments)} if isinstance(c, ParsedCall) else None
                for c in self.final_turn_calls(text)]

    def describe_functions(self, specs: Sequence[Mapping]) -> str:
        """Instructions for calling an item's own functions (JSON-schema specs)."""
        raise NotImplementedError(
            f"the {self.name!r} call syntax cannot call an item's own functions; use "
            "tools.syntax='hermes' for function-calling data")

    def format_result(self, result: ToolResult) -> str:
        """Text appended to the context after a call (the syntax's result wrapper)."""
        return self.result_template.replace("{result}", result.text)

    @abc.abstractmethod
    def describe(self, tools: Mapping[str, str]) -> str:
        """Instructions for a system prompt: how to call each tool (name -> description)."""

    def _unknown_tool(self, name: str, raw: str, start: int, end: int) -> InvalidCall:
        available = ", ".join(self.tool_names) or "none"
        return InvalidCall(
            f"unknown tool '{name}'; available tools: {available}", raw, start, end, name
        )


def _find_all(text: str, sub: str, start: int = 0):
    i = text.find(sub, start)
    while i >= 0:
        yield i
        i = text.find(sub, i + 1)


def clean_code(body: str) -> str:
    """Normalises a code body: drops a Markdown fence the model put inside the call, dedents, and
    strips blank lines at both ends (indentation of the first line would be a SyntaxError)."""
    lines = body.strip("\n").splitlines()
    if lines and lines[0].strip().startswith("```"):
        lines = lines[1:]
        if lines and lines[-1].strip() == "```":
            lines = lines[:-1]
    return textwrap.dedent("\n".join(lines)).strip("\n")


def body_arguments(tool: str, body: str, arg_key: str) -> dict[str, str]:
    """Arguments for a one-block call: code keeps its layout, other text is stripped."""
    value = clean_code(body) if arg_key == "code" else body.strip()
    return {arg_key: value}


def empty_call(tool: str, how: str, raw: str, start: int, end: int) -> InvalidCall:
    return InvalidCall(f"empty {tool} call: {how}", raw, start, end, tool)
