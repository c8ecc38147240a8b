"""The one place that turns dynamic lengths and batch sizes into padded static shapes.

Every jitted function sees only shapes produced here, so a new prompt length, tool-output length
or batch of trajectories never triggers a recompile in steady state.
"""

from __future__ import annotations

import dataclasses

from toolrl_jax.config import RolloutConfig


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class RolloutShapes:
    """Static shapes of the three compiled rollout functions."""

    batch: int  # rows = prompts_per_step * group_size
    prefill_len: int  # prompt width (prompts are right-padded to it)
    extend_len: int  # tool-result width appended per turn
    segment_len: int  # decode steps per compiled segment call
    cache_len: int  # KV cache length

    @classmethod
    def from_config(cls, cfg: RolloutConfig, result_overhead_tokens: int = 16,
                    batch: int | None = None) -> RolloutShapes:
        """``result_overhead_tokens`` leaves room for the result wrapper (``<result>`` tags …)."""
        return cls(
            batch=batch or cfg.prompts_per_step * cfg.group_size,
            prefill_len=round_up(cfg.max_prompt_len, cfg.length_bucket),
            extend_len=round_up(cfg.max_result_tokens + result_overhead_tokens, cfg.length_bucket),
            segment_len=cfg.segment_len,
            cache_len=round_up(cfg.max_cache_len, cfg.length_bucket),
        )


def train_length(longest: int, bucket: int, maximum: int) -> int:
    """Padded sequence length for a train batch: the smallest bucket multiple that fits."""
    if longest > maximum:
        raise ValueError(f"sequence of {longest} tokens exceeds the maximum {maximum}")
    return min(round_up(max(longest, 1), bucket), round_up(maximum, bucket))
