"""The papers' claims as checkable statements, and the verdict our intervals give each one.

A claim says a method moves a held-out metric against a baseline in one direction (more
accuracy, fewer calls, fewer tokens), with the paper's own number beside it. The verdict reads
the paired bootstrap interval of ``method − baseline`` (:mod:`toolrl_jax.eval.bootstrap`):

* ``reproduced``: the interval excludes zero on the claimed side;
* ``direction only``: the estimate is on the claimed side but the interval includes zero;
* ``not reproduced``: the estimate is zero or on the other side, the interval includes zero;
* ``refuted``: the interval excludes zero on the other side.

A reproduced direction says nothing about the size: the table prints ours relative to the
baseline next to the paper's, so a reader sees a 5 % effect against a claimed 72 %.
"""

from __future__ import annotations

import dataclasses

from toolrl_jax.eval.bootstrap import Interval

SFT_START = "sft (start)"


@dataclasses.dataclass(frozen=True)
class Claim:
    method: str  # a compare recipe
    baseline: str  # a compare recipe, or SFT_START
    metric: str  # an eval/runner.py:ITEM_METRICS key: correct, tool_calls, tokens
    direction: int  # +1: the method raises the metric against the baseline, -1: lowers it
    paper: str  # the paper's statement, with its number
    paper_relative: float | None = None  # the paper's relative change (-0.72: 72 % fewer)


# The claims of docs/methods.md; the first is the comparison's own precondition (RL must beat
# its starting point before any recipe's gain over GRPO means anything).
CLAIMS = (
    Claim("grpo", SFT_START, "correct", +1, "RL improves held-out accuracy over its SFT start "
          "(precondition of every other row)"),
    Claim("dapo", "grpo", "correct", +1, "DAPO: higher accuracy than GRPO (AIME 2024 50 vs 30 "
          "on Qwen2.5-32B)", 0.67),
    Claim("tepo_sparse", "grpo", "tool_calls", -1, "TEPO sparse reward: ~72 % fewer tool calls at "
          "comparable accuracy", -0.72),
    Claim("tepo_sparse", "grpo", "correct", +1, "TEPO sparse reward: accuracy comparable to or "
          "above the baseline"),
    Claim("tepo_dense", "grpo", "correct", +1, "TEPO dense reward: ~22 % better task performance",
          0.22),
    Claim("tao_rl", "grpo", "correct", +1, "TAO-RL: higher accuracy than GRPO-style tool RL"),
    Claim("autotool", "grpo", "correct", +1, "AutoTool: higher accuracy than GRPO"),
    Claim("autotool", "grpo", "tokens", -1, "AutoTool: ~81 % fewer tokens", -0.81),
    Claim("autotool", "sft_long", "tokens", -1, "AutoTool: fewer tokens than the always-think "
          "(distilled) start"),
    Claim("autotool", "sft_long", "correct", +1, "AutoTool: accuracy at least the always-think "
          "start's"),
)


def verdict(direction: int, diff: Interval) -> str:
    """The four-way reading of ``method − baseline`` against the claimed ``direction``."""
    if diff.excludes_zero():
        return "reproduced" if (diff.estimate > 0) == (direction > 0) else "refuted"
    return "direction only" if diff.estimate * direction > 0 else "not reproduced"


def applicable(methods: set[str]) -> list[Claim]:
    """The claims whose method and baseline were both run (SFT_START always is)."""
    have = methods | {SFT_START}
    return [c for c in CLAIMS if c.method in have and c.baseline in have]
