"""Arithmetic tool tasks: easy items a tiny model can memorise, hard ones that need a tool.

easy: single-digit ``a+b``, ``a*b``, ``a-b`` (a finite pool of 255 questions; a small model can
      learn them all by heart, so calling a tool is wasted tokens).
hard: a 2-3 digit times 2 digit product (``437*86``) or a sum of 4-5 numbers of 2-4 digits
      (``1234+567+89+4021``): out of reach without the calculator or Python tool.

Held-out membership is keyed by the question text (see :mod:`toolrl_jax.data.splits`).
"""

from __future__ import annotations

import random
from typing import Any, Literal

from toolrl_jax.data.expressions import calculate
from toolrl_jax.data.records import make_record
from toolrl_jax.data.splits import check_split, cycle_sample, split_of
from toolrl_jax.data.trajectories import format_tool_result

TASK = "arithmetic"
_MAX_REJECTIONS = 10_000  # a split that rejects this many hard draws in a row is misconfigured


def question_for(expr: str) -> str:
    return f"What is {expr}?"


def easy_pool() -> list[tuple[str, str]]:
    """All easy (expression, kind) pairs, in a fixed order."""
    pool = []
    for a in range(10):
        for b in range(10):
            pool.append((f"{a}+{b}", "sum"))
            pool.append((f"{a}*{b}", "product"))
            if a >= b:
                pool.append((f"{a}-{b}", "difference"))
    return pool


def draw_hard(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        return f"{rng.randint(12, 999)}*{rng.randint(12, 99)}", "product"
    terms = [str(rng.randint(10, 9999)) for _ in range(rng.choice((4, 5)))]
    return "+".join(terms), "long_sum"


def trajectory_for(expr: str, tool: Literal["calculator", "python"]) -> str:
    """Long-mode completion with the real tool output (computed exactly)."""
    value = calculate(expr)
    if tool == "calculator":
        plan, call = "the calculator", f"<calculator>{expr}</calculator>"
    else:
        plan, call = "Python", f"<python>print({expr})</python>"
    return (
        f"<think>Use {plan} for {expr}.</think>\n{call}{format_tool_result(value)}"
        f"<answer>{value}</answer>"
    )


def generate(
    split: str,
    num: int,
    *,
    seed: int,
    hard_fraction: float,
    split_seed: int,
    heldout_fraction: float,
    tool: Literal["calculator", "python"] = "calculator",
) -> list[dict[str, Any]]:
    """``num`` arithmetic records of ``split``; ``round(num * hard_fraction)`` of them hard.

    Easy items cycle through the split's part of the easy pool (it is small, and repetition is
    what makes them memorisable); hard ones are drawn until they fall in the split.
    """
    check_split(split)
    rng = random.Random(f"{TASK}:{split}:{seed}")
    num_hard = round(num * hard_fraction)
    pool = [e for e in easy_pool() if split_of(question_for(e[0]), split_seed, heldout_fraction)
            == split]
    if num - num_hard > 0 and not pool:
        raise ValueError(f"no easy arithmetic question falls in split {split!r}; change split_seed "
                         "or heldout_fraction")
    easy = iter(cycle_sample(rng, pool, num - num_hard))
    difficulties = ["hard"] * num_hard + ["easy"] * (num - num_hard)
    rng.shuffle(difficulties)
    records = []
    for i, difficulty in enumerate(difficulties):
        if difficulty == "easy":
            expr, kind = next(easy)
        else:
            for _ in range(_MAX_REJECTIONS):
                expr, kind = draw_hard(rng)
                if split_of(question_for(expr), split_seed, heldout_fraction) == split:
                    break
            else:
                raise ValueError(f"could not draw a hard arithmetic item in split {split!r}")
        records.append(make_record(
            id=f"{TASK}-{split}-{i:05d}",
            question=question_for(expr),
            answer=calculate(expr),
            task=TASK,
            difficulty=difficulty,
            trajectory=trajectory_for(expr, tool),
            metadata={"expression": expr, "kind": kind},
        ))
    return records
