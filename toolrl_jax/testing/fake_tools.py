"""A deterministic stand-in syntax + executor that makes a random tiny model call tools often.

A random model almost never writes ``</python>``; this syntax treats a frequent token's text as
the end of a call instead, so engine tests get multi-turn rollouts with tool results whose lengths
differ per row, through exactly the same engine code path as a real syntax.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from toolrl_jax.tools.base import ParsedCall, ToolResult
from toolrl_jax.types import ToolStatus
from toolrl_jax.verifiers import AnswerStyle


class EndTokenSyntax:
    """A call ends where the turn's text ends with one of ``end_texts``; results are ``[r …]``.

    Answers are read like a real syntax's (``toolrl_jax.verifiers.extract_answer`` with
    ``answer_style``); a random model practically never closes an ``<answer>`` tag.
    """

    def __init__(self, end_texts: Sequence[str], answer_style: AnswerStyle = "tag"):
        self.end_texts = tuple(end_texts)
        self.answer_style = answer_style
        self.stop_strings = self.end_texts

    def find_call_end(self, text: str, start: int = 0) -> int | None:
        return len(text) if text.endswith(self.end_texts) else None

    def parse_last_call(self, text: str):
        if not text.endswith(self.end_texts):
            return None
        return ParsedCall("echo", {"n": len(text)}, text, 0, len(text))

    def format_result(self, result: ToolResult) -> str:
        return f" [r {result.text}]"


def echo_executor(calls: Sequence[ParsedCall], delay_s: float = 0.0) -> list[ToolResult]:
    """Result length depends on the call (hence differs per row): ``n`` mod 7 + 1 words."""
    if delay_s:
        time.sleep(delay_s)
    return [ToolResult(ToolStatus.OK, " ".join(["ok"] * (int(c.arguments["n"]) % 7 + 1)))
            for c in calls]


class NoCalls:
    """A call syntax under which nothing is ever a call (plain generation; answers in
    ``<answer>`` tags): the benchmarks' engines decode without tools."""

    stop_strings = ()
    answer_style = "tag"

    def find_call_end(self, text, start=0):
        return None

    def parse_last_call(self, text):
        return None

    def format_result(self, result):
        return result.text


class CompileCounter:
    """Counts XLA compilations (of anything) while active: ``with CompileCounter() as c: …``."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0
        self._active = False

    def _listener(self, event: str, duration: float, **_):
        if self._active and event == self.EVENT:
            self.count += 1

    def __enter__(self):
        import jax

        if not getattr(CompileCounter, "_registered", False):
            jax.monitoring.register_event_duration_secs_listener(CompileCounter._dispatch)
            CompileCounter._registered = True
            CompileCounter._instances = []
        CompileCounter._instances.append(self)
        self._active = True
        return self

    def __exit__(self, *exc):
        self._active = False
        CompileCounter._instances.remove(self)

    @staticmethod
    def _dispatch(event: str, duration: float, **kwargs):
        for inst in list(getattr(CompileCounter, "_instances", [])):
            inst._listener(event, duration, **kwargs)
