"""Host-side row and group filters (NumPy), and DAPO's oversample-and-refill rule.

Shapes stay static: a filter never removes a row from the arrays, it sets the row's weight to 0.
The train step multiplies ``loss_mask_BT`` by the weight, so a dropped row contributes exactly zero
gradient, while advantages are still computed over the full group — a dropped row stays in its
group's baseline (TAO-RL's rule for rollouts whose tool calls all failed).

Group filters (whole groups whose rewards carry no learning signal) are paired with a
:class:`RefillRule`: the loop samples more prompts until enough groups survive, then
:func:`refill` picks a static number of groups, padding with dropped groups at weight 0 if the
sampling budget ran out.

``rl.filters`` names entries of :data:`toolrl_jax.rl.registry.FILTERS`, registered below with
``@FILTERS.register(name, drops_groups=...)``: ``fn(reward_B, inputs, group_size)`` returns the
drop mask, ``[B]`` (rows) or ``[P]`` (groups). :func:`run_filters` combines looked-up entries.

Groups are ``G`` consecutive rows (see :mod:`toolrl_jax.rl.advantages`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np

from toolrl_jax.rl.registry import FILTERS, Filter
from toolrl_jax.rl.rewards import RewardInputs
from toolrl_jax.types import StopReason, ToolStatus

_UNIFORM_TOL = 1e-6  # rewards closer than this are "equal" (float noise, not signal)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FilterResult:
    """``row_weight_B``: float32 1 keep / 0 drop. ``group_keep_P``: groups no group filter dropped.

    ``counts``: rows each filter would drop on its own (``filter/<name>``), plus the totals
    ``filter/rows_dropped`` and ``filter/groups_dropped`` (the union).
    """

    row_weight_B: np.ndarray
    group_keep_P: np.ndarray
    counts: dict[str, int]


def all_tools_failed(call_status_BK, num_calls_B) -> np.ndarray:
    """``[B]`` bool: the row made >= 1 call and every call failed (status != OK).

    Rows with no calls are *not* dropped: answering directly is not a tool failure.
    """
    status = np.asarray(call_status_BK)
    n = np.asarray(num_calls_B)
    exists = np.arange(status.shape[1])[None, :] < n[:, None]
    failed = exists & (status != int(ToolStatus.OK))
    return (n > 0) & (failed.sum(axis=-1) == n)


def uniform_groups(values_B, group_size: int) -> np.ndarray:
    """``[P]`` bool: every row of the group has the same value (zero variance: A = 0 for all)."""
    v = np.asarray(values_B, np.float64).reshape(-1, group_size)
    return np.ptp(v, axis=-1) <= _UNIFORM_TOL


def void_turns(stop_reason_B, has_answer_B, call_status_BK, num_calls_B) -> np.ndarray:
    """``[B]`` bool: SimpleTIR's void turn — a turn with neither a complete tool call nor an answer.

    A row has one if it ended by the model's own stop (EOS / answer tag) without an extractable
    answer, or if any of its calls could not be parsed (``INVALID_CALL``: an incomplete call).
    Budget / cache / max-turn truncation is not a void turn (overlong shaping handles length).
    """
    stop = [StopReason(s) for s in stop_reason_B]
    self_stop = np.array([s in (StopReason.EOS, StopReason.ANSWER) for s in stop], bool)
    no_answer = ~np.asarray(has_answer_B, bool)
    status = np.asarray(call_status_BK)
    exists = np.arange(status.shape[1])[None, :] < np.asarray(num_calls_B)[:, None]
    invalid = np.any(exists & (status == int(ToolStatus.INVALID_CALL)), axis=-1)
    return (self_stop & no_answer) | invalid


def run_filters(
    filters: Sequence[tuple[str, Filter]], reward_B, inputs: RewardInputs, group_size: int
) -> FilterResult:
    """Runs looked-up ``(name, entry)`` filters and combines them: a row survives only if every
    filter keeps it (and its group). ``reward_B`` ``[B]`` with ``B = P * group_size``. An entry
    whose input is missing from ``inputs`` raises with the field's name."""
    reward = np.asarray(reward_B, np.float32)
    B = reward.shape[0]
    if B % group_size:
        raise ValueError(f"batch {B} is not a multiple of group_size={group_size}")
    P = B // group_size
    row_drop = np.zeros(B, bool)
    group_drop = np.zeros(P, bool)
    counts: dict[str, int] = {}
    for name, f in filters:
        drop = np.asarray(f.fn(reward, inputs, group_size), bool)
        if f.drops_groups:
            group_drop |= drop
            counts[f"filter/{name}"] = int(drop.sum()) * group_size
        else:
            row_drop |= drop
            counts[f"filter/{name}"] = int(drop.sum())
    keep = ~row_drop & ~np.repeat(group_drop, group_size)
    counts["filter/rows_dropped"] = int(B - keep.sum())
    counts["filter/groups_dropped"] = int(group_drop.sum())
    return FilterResult(keep.astype(np.float32), ~group_drop, counts)


def apply_filters(
    names: Sequence[str],
    *,
    group_size: int,
    reward_B,
    correct_B=None,
    call_status_BK=None,
    num_calls_B=None,
    void_turn_B=None,
) -> FilterResult:
    """Looks the named filters up in ``FILTERS`` and runs them (:func:`run_filters`) on these
    facts (``[B]`` / ``[B, K]``). Raises on an unknown name or a missing input."""
    chosen = [(name, FILTERS[name]) for name in names]
    inputs = RewardInputs(correct_B=correct_B, call_status_BK=call_status_BK,
                          num_calls_B=num_calls_B, void_turn_B=void_turn_B)
    return run_filters(chosen, reward_B, inputs, group_size)


# --- registered filter entries: fn(reward_B, inputs, group_size) -> drop [B] or [P] -------------


@FILTERS.register("all_tools_failed", drops_groups=False)
def _drop_all_tools_failed(reward_B, x: RewardInputs, group_size: int) -> np.ndarray:
    """TAO-RL: rows with >= 1 call, all failed (:func:`all_tools_failed`); kept in the baseline."""
    why = "filter 'all_tools_failed'"
    return all_tools_failed(x.need("call_status_BK", why), x.need("num_calls_B", why))


@FILTERS.register("void_turn", drops_groups=False)
def _drop_void_turn(reward_B, x: RewardInputs, group_size: int) -> np.ndarray:
    """SimpleTIR: rows with a void turn (``void_turn_B``, from :func:`void_turns`)."""
    return np.asarray(x.need("void_turn_B", "filter 'void_turn'"), bool)


@FILTERS.register("zero_variance", drops_groups=True)
def _drop_zero_variance(reward_B, x: RewardInputs, group_size: int) -> np.ndarray:
    """DAPO dynamic sampling, online at every step (also in the ``autotool`` preset): groups whose
    rewards are all equal (A = 0). AutoTool's offline refinement is ``data/labels.py:refine``."""
    return uniform_groups(reward_B, group_size)


@FILTERS.register("all_correct_or_wrong", drops_groups=True)
def _drop_all_correct_or_wrong(reward_B, x: RewardInputs, group_size: int) -> np.ndarray:
    """TAO-RL: groups whose rollouts are all correct or all wrong (:meth:`RewardInputs.correct`)."""
    return uniform_groups(x.correct("filter 'all_correct_or_wrong'") > 0.5, group_size)


@dataclasses.dataclass(frozen=True)
class RefillRule:
    """How many prompts to sample per round so that ``target_groups`` groups survive the filters.

    ``active`` is False when no group filter is on: then one round of exactly the target.
    ``duplicate`` (``rl.refill='duplicate'``, TAO-RL): once any group survived, the shortfall is
    filled by repeating survivors (:func:`refill`), so sampling stops after the first round that
    kept a group; only a round where nothing survived asks for more (TAO-RL draws a fresh batch
    then). ``pad``: rounds continue until the target is met or ``max_rounds`` is reached.
    """

    target_groups: int
    oversample_factor: float = 1.5
    max_rounds: int = 3
    active: bool = True
    duplicate: bool = False

    def prompts_to_request(self, kept_groups: int, round_idx: int) -> int:
        """Prompts to sample in round ``round_idx`` (0-based) given groups kept so far; 0 = stop.

        The caller must draw exactly this many prompts: the factor is the oversampling
        (``ceil(missing · factor)`` prompts for ``missing`` groups still wanted).
        """
        missing = self.target_groups - kept_groups
        if missing <= 0 or round_idx >= (self.max_rounds if self.active else 1):
            return 0
        if self.active and self.duplicate and kept_groups > 0:
            return 0  # survivors exist: refill() repeats them instead of sampling again
        factor = self.oversample_factor if self.active else 1.0
        return math.ceil(missing * factor)


def refill(group_keep_P, target_groups: int, *,
           duplicate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Picks ``target_groups`` groups from a pool (all rounds concatenated, in sampling order).

    Kept groups first, in order; extra kept groups are discarded. If fewer than the target
    survived: ``duplicate=False`` pads with dropped groups at weight 0 (static shape, zero
    gradient); ``duplicate=True`` repeats the kept groups cyclically at weight 1 (TAO-RL) — and
    pads with dropped groups only when none survived at all.

    Returns ``(group_index, group_weight)``, both ``[target_groups]``.
    """
    keep = np.asarray(group_keep_P, bool)
    kept_idx = np.flatnonzero(keep)
    dropped_idx = np.flatnonzero(~keep)
    if duplicate and kept_idx.size:
        idx = np.resize(kept_idx, target_groups)  # cyclic repeat: each survivor ~equally often
        return idx, np.ones(target_groups, np.float32)
    if kept_idx.size + dropped_idx.size < target_groups:
        raise ValueError(f"pool has {keep.size} groups, fewer than the target {target_groups}")
    idx = np.concatenate([kept_idx, dropped_idx])[:target_groups]
    weight = np.concatenate([np.ones(kept_idx.size), np.zeros(dropped_idx.size)])[:target_groups]
    return idx, weight.astype(np.float32)


def group_rows(group_index_P, group_size: int) -> np.ndarray:
    """Row indices ``[P*G]`` of the selected groups (to gather every per-row array)."""
    g = np.asarray(group_index_P)[:, None]
    return (g * group_size + np.arange(group_size)[None, :]).reshape(-1)
