"""The prompt every task is asked with: a system message naming the tools, then the question.

The same messages feed SFT and RL rollouts, so the model is asked in one way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

# How each tool is called, in the XML call syntax the rollout engine parses.
TOOL_USAGE = {
    "calculator": "<calculator>arithmetic</calculator>",
    "python": "<python>code that prints</python>",
    "search": "<search>query</search>",
}


def system_prompt(tools: Sequence[str]) -> str:
    """Short on purpose: tiny demo models pay for every prompt token."""
    unknown = [t for t in tools if t not in TOOL_USAGE]
    if unknown:
        raise ValueError(f"no prompt text for tools {unknown}; known: {sorted(TOOL_USAGE)}")
    text = "Put the final answer in <answer></answer>."
    if tools:
        usage = ", ".join(TOOL_USAGE[t] for t in tools)
        text += f" You may first call a tool: {usage}. Its output comes back in <result></result>."
    return text


def prompt_messages(question: str, tools: Sequence[str]) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": system_prompt(tools)},
        {"role": "user", "content": question},
    )
