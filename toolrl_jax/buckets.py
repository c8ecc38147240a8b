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
    # Cache prefix widths a decode segment / extend may attend over (ascending, last = cache_len):
    # a call reads only the smallest one its rows can reach, so a step costs what the rows' real
    # lengths need rather than the whole preallocated cache. Each width is one compiled variant.
    kv_windows: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.kv_windows:
            object.__setattr__(self, "kv_windows", (self.cache_len,))
        if self.kv_windows[-1] != self.cache_len or list(self.kv_windows) != sorted(
                set(self.kv_windows)):
            raise ValueError(f"kv_windows {self.kv_windows} must ascend and end at cache_len "
                             f"{self.cache_len}")

    @property
    def extend_widths(self) -> tuple[int, ...]:
        """Compiled tool-result widths: half and all of ``extend_len``.

        A turn's results are appended at the smallest width that holds the longest of them, so
        short results (a calculator's digits) do not pay a forward over the whole budget.
        """
        half = self.extend_len // 2 if self.extend_len % 2 == 0 else self.extend_len
        return tuple(sorted({half, self.extend_len}))

    def extend_width(self, longest: int) -> int:
        return next(w for w in self.extend_widths if w >= longest)

    def kv_window(self, needed: int) -> int:
        """The smallest window holding ``needed`` positions (the whole cache if none does)."""
        return next((w for w in self.kv_windows if w >= needed), self.cache_len)

    @classmethod
    def from_config(cls, cfg: RolloutConfig, result_overhead_tokens: int = 16,
                    batch: int | None = None) -> RolloutShapes:
        """``result_overhead_tokens`` leaves room for the result wrapper (``<result>`` tags …)."""
        cache_len = round_up(cfg.max_cache_len, cfg.length_bucket)
        return cls(
            batch=batch or cfg.prompts_per_step * cfg.group_size,
            prefill_len=round_up(cfg.max_prompt_len, cfg.length_bucket),
            extend_len=round_up(cfg.max_result_tokens + result_overhead_tokens, cfg.length_bucket),
            segment_len=cfg.segment_len,
            cache_len=cache_len,
            kv_windows=kv_windows(cache_len, cfg.cache_windows, cfg.length_bucket),
        )


def kv_windows(cache_len: int, count: int, bucket: int) -> tuple[int, ...]:
    """``count`` evenly spaced cache prefix widths up to ``cache_len``, rounded up to ``bucket``.

    Even spacing bounds the waste of any call at ``cache_len / count`` positions; duplicates after
    rounding collapse, so small caches get fewer variants.
    """
    if count < 1:
        raise ValueError(f"cache_windows={count} must be >= 1")
    widths = {min(cache_len, round_up(-(-cache_len * k // count), bucket))
              for k in range(1, count + 1)}
    return tuple(sorted(widths))
