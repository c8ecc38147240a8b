"""Completion text as segments, SFT modes, and the labelling policy of the AutoTool warm-up.

A completion is a sequence of segments: ``model`` text (what the policy writes, loss on) and
``tool_result`` text (what the host appends after a tool call, loss off). The boundaries are
where the rollout engine stops the model (right after a call's closing tag) and resumes (after the
appended result), so SFT sees text split — and tokenised — the way rollouts produce it.

Stored trajectories (TFDS, user JSONL) mark tool output as ``<result>output</result>`` blocks,
each right after an XML tool call. Whitespace around a block belongs to the rendering, not to the
model: :func:`split_segments` re-renders every block with a ``ResultRenderer`` — by default the
XML syntax's wrapper ``"\\n<result>\\n{result}\\n</result>\\n"`` around the stored output; the
training loop can pass one that runs the real tool and wraps its output with the real syntax, so
SFT shows exactly what the rollout engine will append.

Modes (AutoTool): ``short`` answers directly (``<answer>42</answer>``); ``long`` may think briefly
and call tools before answering.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from toolrl_jax.data import modes
from toolrl_jax.data.splits import stable_uniform

RESULT_OPEN = "<result>"
RESULT_CLOSE = "</result>"
# Mirrors tools.syntax.xml_tags.XmlSyntax.default_result_template (a test keeps them equal).
DEFAULT_RESULT_TEMPLATE = "\n<result>\n{result}\n</result>\n"
TOOL_NAMES = ("python", "calculator", "search")
# Every tag the demo tokenizer keeps as one token; they must decode back to themselves so that
# text-level call parsers see them.
TAGS = tuple(
    tag
    for name in (*TOOL_NAMES, "result", "answer", "think")
    for tag in (f"<{name}>", f"</{name}>")
)
SegmentKind = Literal["model", "tool_result"]
Mode = Literal["short", "long"]
Policy = Literal["always_long", "always_short", "by_difficulty", "random"]
# (call text, e.g. "<calculator>2+2</calculator>"; stored output) -> the text appended after it.
ResultRenderer = Callable[[str, str], str]
# A complete XML call at the very end of the text (its body holds no second opening tag).
_CALL_AT_END_RE = re.compile(r"<(python|calculator|search)>((?:(?!<\1>).)*)</\1>$", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """One warm-up example: chat prompt messages plus the assistant completion as segments."""

    id: str
    messages: tuple[Mapping[str, str], ...]  # system + user, for tokenizer.apply_chat_template
    segments: tuple[Segment, ...]
    mode: Mode
    # Function specs the chat template renders (``apply_chat_template(tools=...)``): a
    # function-calling item prompted through a template that reads tools; empty otherwise.
    tools: tuple[Mapping[str, Any], ...] = ()

    @property
    def completion(self) -> str:
        return join_segments(self.segments)


def format_tool_result(output: str, template: str = DEFAULT_RESULT_TEMPLATE) -> str:
    """The text appended after a tool call: ``template`` with ``{result}`` replaced (``replace``,
    not ``format``: tool output may contain braces)."""
    return template.replace("{result}", output)


def template_renderer(template: str = DEFAULT_RESULT_TEMPLATE) -> ResultRenderer:
    """Re-wraps each stored output with ``template`` (a syntax's ``result_template``)."""
    if "{result}" not in template:
        raise ValueError(f"result template must contain '{{result}}': {template!r}")
    return lambda call, output: format_tool_result(output, template)


def _stored_output(inner: str) -> str:
    # The canonical block is "<result>\n{output}\n</result>": drop exactly that framing.
    inner = inner[1:] if inner.startswith("\n") else inner
    return inner[:-1] if inner.endswith("\n") else inner


def tool_renderer(syntax: Any, executor: Any) -> ResultRenderer:
    """A renderer that runs each stored call with the real tools: ``syntax`` parses the call and
    wraps the result (``parse_last_call``, ``format_result``), ``executor.run_one`` runs it —
    exactly what the rollout engine appends. A failing call raises: the stored trajectory and
    the tools disagree, and training on the error text would teach the wrong thing."""

    def render(call: str, stored_output: str) -> str:
        del stored_output  # the real tool's output replaces it
        result = executor.run_one(syntax.parse_last_call(call))
        if getattr(result.status, "failed", False):
            raise ValueError(f"tool call {call!r} failed while rendering an SFT trajectory: "
                             f"{result.text}")
        return syntax.format_result(result)

    return render


def split_segments(
    completion: str, render_result: ResultRenderer | None = None
) -> tuple[Segment, ...]:
    """Splits a stored trajectory at its ``<result>`` blocks and renders each block.

    Model text before a block must end in an XML tool call (whitespace after the closing tag is
    dropped: generation stops at the tag); whitespace after a block is dropped too (the rendered
    result supplies the separation). Raises ValueError naming the first problem.
    """
    render = render_result or template_renderer()
    segments: list[Segment] = []
    pos = 0
    while True:
        start = completion.find(RESULT_OPEN, pos)
        stray_close = completion.find(RESULT_CLOSE, pos)
        if stray_close >= 0 and (start < 0 or stray_close < start):
            raise ValueError(f"'{RESULT_CLOSE}' at char {stray_close} without '{RESULT_OPEN}'")
        if start < 0:
            break
        end = completion.find(RESULT_CLOSE, start)
        if end < 0:
            raise ValueError(f"'{RESULT_OPEN}' at char {start} is never closed")
        inner = completion[start + len(RESULT_OPEN) : end]
        if RESULT_OPEN in inner:
            raise ValueError(f"nested '{RESULT_OPEN}' inside the block starting at char {start}")
        before = completion[pos:start].rstrip()
        if segments:
            before = before.lstrip()
        call = _CALL_AT_END_RE.search(before)
        if call is None:
            raise ValueError(f"the '{RESULT_OPEN}' block at char {start} does not follow a tool "
                             f"call (<{'>, <'.join(TOOL_NAMES)}>)")
        segments.append(Segment("model", before))
        segments.append(Segment("tool_result", render(call.group(0), _stored_output(inner))))
        pos = end + len(RESULT_CLOSE)
    rest = completion[pos:].lstrip() if segments else completion[pos:]
    if rest:
        segments.append(Segment("model", rest))
    return tuple(segments)


def join_segments(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)


def short_completion(answer: str) -> str:
    return f"<answer>{answer}</answer>"


def detect_mode(completion: str) -> Mode:
    """Text-only :func:`toolrl_jax.data.modes.detect_mode` (the mode tag; untagged: a think
    block or an XML call); scoring passes the syntax and the call records as well."""
    return modes.detect_mode(completion)


def choose_mode(
    policy: Policy, *, item_id: str, difficulty: str, p_long: float, seed: int
) -> Mode:
    """The warm-up labelling policy. ``random`` flips a coin keyed by (seed, item id), so an item's
    mode does not depend on iteration order and survives a resume. ``by_difficulty`` sends items
    of unknown difficulty to ``long`` (the safe choice when a tool may be needed)."""
    if policy == "always_long":
        return "long"
    if policy == "always_short":
        return "short"
    if policy == "by_difficulty":
        return "short" if difficulty == "easy" else "long"
    if policy == "random":
        return "long" if stable_uniform("sft_mode", seed, item_id) < p_long else "short"
    raise ValueError(f"unknown SFT labelling policy {policy!r}")
