"""Reading the final answer out of model text: ``<answer>…</answer>`` tags or ``\\boxed{…}``.

The *last* complete occurrence wins: models often restate or correct an answer, and a tag left open
at the token budget is no answer at all.
"""

from __future__ import annotations

from typing import Literal

AnswerStyle = Literal["tag", "boxed", "tag_or_boxed"]


def extract_tagged(text: str, tag: str = "answer") -> str | None:
    """Content of the last complete ``<tag>…</tag>``, stripped; None if there is none."""
    close = f"</{tag}>"
    end = text.rfind(close)
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : end].strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` with balanced braces; None if none is complete."""
    key = "\\boxed{"
    pos = text.rfind(key)
    while pos >= 0:
        depth, i = 1, pos + len(key)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[pos + len(key) : i - 1].strip()
        pos = text.rfind(key, 0, pos)  # unbalanced (cut off): try an earlier one
    return None


def extract_answer(text: str, style: AnswerStyle = "tag", tag: str = "answer") -> str | None:
    if style == "tag":
        return extract_tagged(text, tag)
    if style == "boxed":
        return extract_boxed(text)
    tagged = extract_tagged(text, tag)
    if tagged is None:
        return extract_boxed(text)
    boxed = extract_boxed(tagged)  # "<answer>\\boxed{4}</answer>" means 4
    return boxed if boxed is not None else tagged
