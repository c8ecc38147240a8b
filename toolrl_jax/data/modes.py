"""AutoTool's reasoning modes: the auto-think mode tag and mode detection for every call syntax.

AutoTool's *short* vs *long* is **no-think vs think**, chosen by the model through an auto-think
template: every completion opens with a mode tag, and a no-think answer may still make the call
(in function calling the call *is* the answer). The tag (Qwen3's hybrid-thinking convention, so
real chat templates and the demo tokenizer's ``<think>`` / ``</think>`` tokens need nothing new):

* think:    ``<think>reasoning…</think>`` then calls / the answer;
* no_think: ``<think></think>`` (an empty block) then calls / the answer directly.

Detection (:func:`detect_mode`), in this order:

1. a leading think block decides: non-empty -> ``long`` (think), empty -> ``short`` (no_think),
   whatever follows — calls included;
2. untagged text (legacy data, models without the template) is ``long`` when it holds a think
   block anywhere or made a tool call *that ran* — counted from the trajectory's call records
   when given (syntax-independent: an executed call has a result span; a function-calling answer
   call is recorded with an empty one), else found in the text by the run's own call syntax
   (``syntax.find_call_end``), so Hermes, Markdown and SimpleTIR calls count as XML ones do.

Forced modes (evaluation in forced-think / forced-no-think): :func:`forced_prefix` is the text
appended to the prompt so the model continues inside that mode; the prefix is then part of the
prompt, not the completion, so the caller passes the forced mode to scoring instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

Mode = Literal["short", "long"]  # short = no_think, long = think (AutoTool's names)
ThinkMode = Literal["auto", "think", "no_think"]  # eval.think_mode

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
NO_THINK_TAG = THINK_OPEN + THINK_CLOSE
_LEADING_BLOCK = re.compile(r"\s*<think>(.*?)</think>", re.DOTALL)
_ANY_BLOCK = re.compile(r"<think>", re.DOTALL)
# Untagged fallback without a syntax: the XML tools' tags (the repository's default syntax).
_XML_CALL = re.compile(r"<(python|calculator|search)>")

MODE_OF_TAG: dict[str, Mode] = {"think": "long", "no_think": "short"}


def mode_tag(mode: Mode, thought: str = "") -> str:
    """The tag a completion in ``mode`` opens with (SFT targets): ``<think>thought</think>`` for
    long (a long completion must think: an empty thought would read as no_think), the empty
    block for short."""
    if mode == "short":
        return NO_THINK_TAG
    if not thought.strip():
        raise ValueError("a think-mode tag needs a non-empty thought")
    return f"{THINK_OPEN}{thought}{THINK_CLOSE}"


def tag_completion(completion: str, mode: Mode) -> str:
    """``completion`` opened by the mode tag. A completion that already opens with a think block
    keeps it (long) — its thought becomes the tag; a short one gets the empty block."""
    m = _LEADING_BLOCK.match(completion)
    if m is not None:
        if (m.group(1).strip() != "") != (mode == "long"):
            raise ValueError(f"completion opens with a think block that contradicts mode {mode!r}")
        return completion
    if mode == "long":
        raise ValueError("a long completion must open with its <think> block to be tagged")
    return NO_THINK_TAG + completion


def forced_prefix(think_mode: ThinkMode) -> str:
    """Text appended after the generation prompt to force a mode: ``<think>`` (the model goes
    on thinking), the empty block (no_think), or nothing (auto: the model picks)."""
    return {"auto": "", "think": THINK_OPEN, "no_think": NO_THINK_TAG}[think_mode]


def executed_calls(calls: Sequence[Any]) -> int:
    """Calls that ran: records with a non-empty result span (an answer call of a
    function-calling item is recorded with an empty one and is not tool use)."""
    return sum(1 for c in calls if c.result_span[1] > c.result_span[0])


def detect_mode(completion: str, syntax: Any = None, calls: Sequence[Any] | None = None) -> Mode:
    """``long`` (think) or ``short`` (no_think); see the module docstring for the rules.

    ``syntax``: the run's call syntax (``find_call_end``), for untagged text without records.
    ``calls``: the trajectory's :class:`~toolrl_jax.types.ToolCallRecord` list, when known.
    """
    m = _LEADING_BLOCK.match(completion)
    if m is not None:
        return "long" if m.group(1).strip() else "short"
    if _ANY_BLOCK.search(completion):
        return "long"
    if calls is not None:
        return "long" if executed_calls(calls) > 0 else "short"
    if syntax is not None:
        return "long" if syntax.find_call_end(completion) is not None else "short"
    return "long" if _XML_CALL.search(completion) else "short"
