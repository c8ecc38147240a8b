"""Completion text as segments, SFT modes, and the labelling policy of the AutoTool warm-up.

A completion is a sequence of segments: ``model`` text (what the policy writes, loss on) and
``tool_result`` text (what the host appends after a tool call, loss off). The segment boundaries
are exactly where the rollout engine stops the model (after a tool call's closing tag) and where it
resumes (after ``</result>``), so SFT sees tokens split the way rollouts produce them.

Modes (AutoTool): ``short`` answers directly (``<answer>42</answer>``); ``long`` may think briefly
and call tools before answering.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from toolrl_jax.data.splits import stable_uniform

RESULT_OPEN = "<result>"
RESULT_CLOSE = "</result>"
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
_CALL_OR_THINK_RE = re.compile(r"<(python|calculator|search|think)>")


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

    @property
    def completion(self) -> str:
        return join_segments(self.segments)


def format_tool_result(output: str) -> str:
    """The text the host appends after a tool call (the ``<result>`` block, newline-delimited)."""
    return f"{RESULT_OPEN}\n{output}\n{RESULT_CLOSE}"


def split_segments(completion: str) -> tuple[Segment, ...]:
    """Splits completion text at ``<result>…</result>`` blocks; raises ValueError on bad nesting."""
    segments: list[Segment] = []
    pos = 0
    while True:
        start = completion.find(RESULT_OPEN, pos)
        stray_close = completion.find(RESULT_CLOSE, pos)
        if start < 0:
            if stray_close >= 0:
                raise ValueError(f"'{RESULT_CLOSE}' at char {stray_close} without '{RESULT_OPEN}'")
            break
        if 0 <= stray_close < start:
            raise ValueError(f"'{RESULT_CLOSE}' at char {stray_close} without '{RESULT_OPEN}'")
        end = completion.find(RESULT_CLOSE, start)
        if end < 0:
            raise ValueError(f"'{RESULT_OPEN}' at char {start} is never closed")
        end += len(RESULT_CLOSE)
        inner = completion[start + len(RESULT_OPEN) : end - len(RESULT_CLOSE)]
        if RESULT_OPEN in inner:
            raise ValueError(f"nested '{RESULT_OPEN}' inside the block starting at char {start}")
        if start > pos:
            segments.append(Segment("model", completion[pos:start]))
        segments.append(Segment("tool_result", completion[start:end]))
        pos = end
    if pos < len(completion):
        segments.append(Segment("model", completion[pos:]))
    return tuple(segments)


def join_segments(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)


def short_completion(answer: str) -> str:
    return f"<answer>{answer}</answer>"


def detect_mode(completion: str) -> Mode:
    """``long`` when the completion thinks or calls a tool, ``short`` otherwise."""
    return "long" if _CALL_OR_THINK_RE.search(completion) else "short"


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
