"""AutoTool warm-up targets for function-calling items: the gold calls in no-think and think mode.

A function-calling record (:mod:`toolrl_jax.data.function_calling`) has no stored trajectory: its
warm-up completion is written here from its ground truth.

* short (no_think): the gold call(s) directly, as Hermes ``<tool_call>`` JSON. Several (parallel)
  calls go in *one* block holding a JSON list: the rollout ends a row at the first complete call of
  the item's own functions (``answer_calls``), so calls in separate blocks would be cut after the
  first one, and the Hermes parser reads a list block as that many calls.
* long (think): a think block that plans the calls — which function, which argument values (the
  gold values, so unit and format conversions are spelled out before the call) — then the same
  calls. For an item no function fits, the thought says so.

An item whose right answer is no call answers in text in both modes (``<answer>…</answer>`` or
``\\boxed{…}``, per ``tools.answer_style``). With ``mode_tag`` a short target opens with the empty
think block (AutoTool's auto-think template, :mod:`toolrl_jax.data.modes`); a long one always
opens with its thought.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolrl_jax.data.function_calling import gold_calls, is_function_calling
from toolrl_jax.data.modes import THINK_CLOSE, THINK_OPEN, Mode, tag_completion
from toolrl_jax.data.prompts import (
    FunctionsPrompt,
    function_call_instructions,
    function_prompt_messages,
)
from toolrl_jax.data.trajectories import Segment, SFTExample

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
NO_CALL_TEXT = "None of the available functions can do this."


def call_block(calls: Sequence[Mapping[str, Any]]) -> str:
    """The calls (``{"name", "arguments"}``) as one Hermes block: an object for one call, a list
    for several (see the module docstring for why never several blocks)."""
    if not calls:
        raise ValueError("call_block needs at least one call")
    body = calls[0] if len(calls) == 1 else list(calls)
    return f"{CALL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{CALL_CLOSE}"


def no_call_answer(answer_style: str = "tag") -> str:
    return rf"\boxed{{{NO_CALL_TEXT}}}" if answer_style == "boxed" else f"<answer>{NO_CALL_TEXT}</answer>"


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def thought(record: Mapping[str, Any]) -> str:
    """The think-mode plan of a function-calling item, from its ground truth."""
    calls = gold_calls(record)
    if not calls:
        names = ", ".join(f["name"] for f in record["metadata"]["tools"])
        return f"The functions ({names}) cannot do what is asked, so I make no call."
    plans = []
    for c in calls:
        args = ", ".join(f"{k} = {_value(v)}" for k, v in c["arguments"].items())
        plans.append(f"{c['name']} with {args}" if args else f"{c['name']} with no arguments")
    count = "one call" if len(calls) == 1 else f"{len(calls)} calls"
    return f"The request needs {count}: " + "; ".join(plans) + "."


def fc_completion(record: Mapping[str, Any], mode: Mode, *, answer_style: str = "tag",
                  mode_tag: bool = False) -> str:
    """The warm-up target of ``record`` in ``mode`` (see the module docstring)."""
    if not is_function_calling(record):
        raise ValueError(f"record {record.get('id')!r} is not a function-calling item")
    calls = gold_calls(record)
    body = call_block(calls) if calls else no_call_answer(answer_style)
    if mode == "long":
        return f"{THINK_OPEN}{thought(record)}{THINK_CLOSE}\n{body}"
    if mode != "short":
        raise ValueError(f"unknown mode {mode!r}; expected 'short' or 'long'")
    return tag_completion(body, "short") if mode_tag else body


def fc_sft_example(record: Mapping[str, Any], mode: Mode, *,
                   describe_functions: FunctionsPrompt | None,
                   template_tools: Sequence[Mapping[str, Any]] = (), answer_style: str = "tag",
                   mode_tag: bool = False) -> SFTExample:
    """The warm-up example of a function-calling item, prompted exactly as its rollouts are
    (:class:`toolrl_jax.data.pipeline.AddPrompt`): the item's functions described by the call
    syntax (``describe_functions``), or rendered by the chat template (``template_tools``, with
    ``describe_functions=None``)."""
    if describe_functions is None and not template_tools:
        raise ValueError(f"record {record['id']!r} brings its own functions: pass "
                         "describe_functions (the call syntax's) or template_tools")
    messages = function_prompt_messages(record, describe=describe_functions,
                                        answer_style=answer_style, mode_tag=mode_tag)
    text = fc_completion(record, mode, answer_style=answer_style, mode_tag=mode_tag)
    return SFTExample(id=record["id"], messages=messages, segments=(Segment("model", text),),
                      mode=mode, tools=tuple(dict(t) for t in template_tools))


def describe_functions_of(syntax: Any) -> FunctionsPrompt | None:
    """The call syntax's way to list an item's own functions, or None when it has none (such
    items then need a chat template that renders tools)."""
    try:
        syntax.describe_functions([])
    except (NotImplementedError, AttributeError):
        return None
    return syntax.describe_functions


def fc_tokenizer_texts(records: Iterable[Mapping[str, Any]],
                       describe_functions: FunctionsPrompt | None,
                       answer_style: str = "tag") -> Iterable[str]:
    """What the demo tokenizer should compress for function-calling items: the system text their
    prompts carry (the syntax's description of the item's functions, when given, and the
    instructions) and both warm-up modes. Nothing without function-calling items, so other
    tasks' tokenizers stay as they were."""
    first = True
    for r in records:
        if not is_function_calling(r):
            continue
        if first:
            yield function_call_instructions(answer_style)
            first = False
        tools = r["metadata"]["tools"]
        if describe_functions is not None:
            yield describe_functions(tools)
        else:
            yield "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        for mode in ("short", "long"):
            yield fc_completion(r, mode, answer_style=answer_style, mode_tag=True)
