"""The prompt every task is asked with: a system message naming the tools, then the question.

The same messages feed SFT and RL rollouts, so the model is asked in one way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# How each tool is called, in the XML call syntax the rollout engine parses.
TOOL_USAGE = {
    "calculator": "<calculator>arithmetic</calculator>",
    "python": "<python>code that prints</python>",
    "search": "<search>query</search>",
}


# AutoTool's auto-think template (``sft.mode_tag``): the reply opens with its mode tag
# (data/modes.py). Appended to the system prompt of SFT, RL and evaluation alike.
MODE_TAG_INSTRUCTION = "Start with <think>reasoning</think>, or <think></think> to answer directly."


def system_prompt(tools: Sequence[str], mode_tag: bool = False) -> str:
    """Short on purpose: tiny demo models pay for every prompt token."""
    unknown = [t for t in tools if t not in TOOL_USAGE]
    if unknown:
        raise ValueError(f"no prompt text for tools {unknown}; known: {sorted(TOOL_USAGE)}")
    text = "Put the final answer in <answer></answer>."
    if tools:
        usage = ", ".join(TOOL_USAGE[t] for t in tools)
        text += f" You may first call a tool: {usage}. Its output comes back in <result></result>."
    if mode_tag:
        text += " " + MODE_TAG_INSTRUCTION
    return text


def prompt_messages(question: str, tools: Sequence[str],
                    mode_tag: bool = False) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": system_prompt(tools, mode_tag)},
        {"role": "user", "content": question},
    )


# ------------------------------------------------------------------------- function-calling items

FunctionsPrompt = Callable[[Sequence[Mapping[str, Any]]], str]


def function_call_instructions(answer_style: str = "tag") -> str:
    """What to do with an item's own functions (the syntax's description says how to call)."""
    where = r"\boxed{}" if answer_style == "boxed" else "<answer></answer>"
    return ("Call the functions that answer the request, with every argument it needs, and "
            f"nothing else. If none of the functions fits, make no call and reply in {where}.")


def function_prompt_messages(record: Mapping[str, Any], *, describe: FunctionsPrompt | None,
                             answer_style: str = "tag",
                             mode_tag: bool = False) -> tuple[dict[str, str], ...]:
    """The chat of a function-calling record. ``describe`` renders the item's functions as the
    call syntax's own instructions (the demo tokenizer); None when the chat template renders them
    itself (``apply_chat_template(..., tools=...)``, Qwen2.5 / Llama-3.1). ``mode_tag``: ask for
    the auto-think mode tag (:data:`MODE_TAG_INSTRUCTION`)."""
    meta = record.get("metadata") or {}
    messages = [dict(m) for m in meta.get("messages") or
                [{"role": "user", "content": record["question"]}]]
    system = function_call_instructions(answer_style)
    if mode_tag:
        system += " " + MODE_TAG_INSTRUCTION
    if describe is not None:
        system = describe(meta.get("tools") or []) + "\n\n" + system
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = system + "\n\n" + messages[0]["content"]
    else:
        messages.insert(0, {"role": "system", "content": system})
    return tuple(messages)


def template_renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template reads ``tools`` (Qwen2.5, Llama-3.1, Hermes)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


def template_tools(functions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Function specs as chat templates take them: ``{"type": "function", "function": spec}``;
    BFCL's ``dict`` / ``float`` / ``tuple`` types written as JSON schema's ``object`` / ``number``
    / ``array``."""
    def schema(node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {k: schema(v) for k, v in node.items()}
            if isinstance(out.get("type"), str):
                out["type"] = _JSON_TYPES.get(out["type"], out["type"])
            return out
        if isinstance(node, list):
            return [schema(v) for v in node]
        return node

    return [{"type": "function", "function": schema(dict(f))} for f in functions]


_JSON_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
