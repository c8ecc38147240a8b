"""Host-side rewards (NumPy, float32 ``[B]`` or ``[B, K]``) and the registered reward entries.

Inputs are per-trajectory facts the host already holds (:class:`RewardInputs`): correctness or F1
from a verifier, format validity, generated lengths (tokens), the AutoTool mode, and per-call ΔH
from :func:`toolrl_jax.rl.tool_entropy.call_entropy_deltas` (computed from the *sampler's*
entropy, a constant: rewards never carry gradient).

``rl.reward`` names one entry of :data:`toolrl_jax.rl.registry.REWARDS` (registered at the end of
this module): ``(cfg, inputs) -> (base_B, call_reward_BK | None)``. The recipe adds the format and
overlong terms to ``base_B``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from toolrl_jax.rl.registry import REWARDS


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RewardInputs:
    """Host facts per trajectory (NumPy, ``[B]`` or ``[B, K]``). Every field is optional here;
    a reward or filter that needs a missing one raises with its name (:meth:`need`).

    ``score_B``: verifier score in [0, 1] (0/1, or F1); every built-in reward needs it.
    ``correct_B``: defaults to ``score_B >= 1`` (full marks). ``format_ok_B``: 1 well-formed.
    ``length_B``: generated tokens. ``short_mode_B``: AutoTool mode, 1 short / 0 long.
    ``num_calls_B``: tool calls made. ``delta_entropy_BK`` / ``delta_valid_BK``: per-call ΔH and
    whether it is defined (:func:`toolrl_jax.rl.tool_entropy.call_entropy_deltas`).
    ``call_status_BK``: :class:`toolrl_jax.types.ToolStatus` per call slot, -1 on padding.
    ``void_turn_B``: SimpleTIR's void turn (:func:`toolrl_jax.rl.filters.void_turns`).
    """

    score_B: np.ndarray | None = None
    correct_B: np.ndarray | None = None
    format_ok_B: np.ndarray | None = None
    length_B: np.ndarray | None = None
    short_mode_B: np.ndarray | None = None
    num_calls_B: np.ndarray | None = None
    delta_entropy_BK: np.ndarray | None = None
    delta_valid_BK: np.ndarray | None = None
    call_status_BK: np.ndarray | None = None
    void_turn_B: np.ndarray | None = None

    def correct(self, why: str = "correctness") -> np.ndarray:
        """``[B]`` float32 0/1: ``correct_B``, else ``score_B >= 1`` (full marks); ``why`` names
        the user in the error when both are missing."""
        if self.correct_B is not None:
            return np.asarray(self.correct_B, np.float32)
        score = self.need("score_B", f"{why} (correct_B defaults to score_B >= 1)")
        return (np.asarray(score, np.float32) >= 1.0 - 1e-6).astype(np.float32)

    def need(self, name: str, why: str) -> np.ndarray:
        """The field ``name`` as an array; raises naming it and ``why`` when it is missing."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"RewardInputs.{name} is required by {why}")
        return np.asarray(value)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rewards:
    """``reward_B``: the trajectory reward ``[B]`` (group baseline, outcome advantage, logging).
    ``call_reward_BK``: per-call rewards ``[B, K]`` (TEPO dense), else None. ``components``: the
    parts of ``reward_B`` (``reward/base``, ``reward/format``, ``reward/overlong``), for logs.
    """

    reward_B: np.ndarray
    call_reward_BK: np.ndarray | None
    components: dict[str, np.ndarray]


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def outcome_rewards(
    predictions: Sequence[str], references: Sequence, verifier: Callable[[str, object], float]
) -> np.ndarray:
    """Verifier scores: ``verifier(prediction, reference)`` -> bool (0/1) or F1 in [0, 1]."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return _f32([float(verifier(p, r)) for p, r in zip(predictions, references, strict=True)])


def format_reward(format_ok_B, weight: float) -> np.ndarray:
    """``-weight`` for a malformed output, 0 for a well-formed one."""
    return -weight * (1.0 - _f32(format_ok_B))


def overlong_penalty(length_B, max_len: int, buffer: int) -> np.ndarray:
    """DAPO soft overlong punishment, in generated tokens.

    0 for ``L <= max_len - buffer``; linear ``(max_len - buffer - L) / buffer`` down to -1 at
    ``L = max_len``; -1 beyond. ``buffer = 0`` disables (all zeros).
    """
    length = _f32(length_B)
    if buffer <= 0:
        return np.zeros_like(length)
    if buffer > max_len:
        raise ValueError(f"overlong buffer {buffer} exceeds max_len {max_len}")
    soft = (max_len - buffer - length) / buffer
    return np.where(length <= max_len - buffer, 0.0, np.where(length <= max_len, soft, -1.0)
                    ).astype(np.float32)


def _reducing(delta_BK, valid_BK) -> np.ndarray:
    return np.asarray(valid_BK, bool) & (_f32(delta_BK) < 0)


def tepo_sparse_reward(f1_B, delta_BK, valid_BK, num_calls_B, *,
                       no_call_ratio: float = 1.0) -> np.ndarray:
    """TEPO sparse: ``F1 · m / n``; m = entropy-reducing calls, n = calls made.

    A call without a defined ΔH (empty neighbouring segment) counts in n but never in m.
    n = 0 uses ``m/n := no_call_ratio``. Equals F1 when every call reduces entropy, 0 when F1 = 0.
    """
    f1 = _f32(f1_B)
    n = np.asarray(num_calls_B, np.int64)
    m = _reducing(delta_BK, valid_BK).sum(axis=-1)
    ratio = np.where(n > 0, m / np.maximum(n, 1), no_call_ratio)
    return (f1 * ratio).astype(np.float32)


def tepo_dense_call_rewards(f1_B, delta_BK, valid_BK, num_calls_B, *,
                            alpha: float) -> np.ndarray:
    """TEPO dense, per call slot: ``F1 · (1 + α · 1{ΔH_k < 0})`` for real calls, 0 on padding.

    Always >= F1 on real calls when α >= 0.
    """
    f1 = _f32(f1_B)[:, None]
    delta = _f32(delta_BK)
    exists = np.arange(delta.shape[1])[None, :] < np.asarray(num_calls_B)[:, None]
    r = f1 * (1.0 + alpha * _reducing(delta, valid_BK))
    return np.where(exists, r, 0.0).astype(np.float32)


def autotool_reward(correct_B, short_mode_B, values=(1.0, 0.5, -0.5, -1.0)) -> np.ndarray:
    """AutoTool's asymmetric reward by correctness × mode.

    ``values = (correct-short, correct-long, wrong-long, wrong-short)``: a correct short answer is
    best, a wrong short answer worst — short mode is rewarded only when it is right.
    """
    cs, cl, wl, ws = values
    correct = np.asarray(correct_B, np.float32) > 0.5
    short = np.asarray(short_mode_B, np.float32) > 0.5
    return np.where(correct, np.where(short, cs, cl), np.where(short, ws, wl)).astype(np.float32)


# --- registered reward entries: (cfg, inputs) -> (base_B, call_reward_BK | None) -----------------


@REWARDS.register("outcome")
def _outcome(cfg, x: RewardInputs) -> tuple[np.ndarray, None]:
    """``base = score`` (0/1 or F1)."""
    return _f32(x.need("score_B", "reward 'outcome'")), None


@REWARDS.register("tepo_sparse")
def _tepo_sparse(cfg, x: RewardInputs) -> tuple[np.ndarray, None]:
    """``base = F1 · m/n`` (:func:`tepo_sparse_reward`, ``rl.tepo_no_call_ratio`` when n = 0)."""
    why = "reward 'tepo_sparse'"
    base = tepo_sparse_reward(
        x.need("score_B", why), x.need("delta_entropy_BK", why), x.need("delta_valid_BK", why),
        x.need("num_calls_B", why), no_call_ratio=cfg.tepo_no_call_ratio)
    return base, None


@REWARDS.register("tepo_dense")
def _tepo_dense(cfg, x: RewardInputs) -> tuple[np.ndarray, np.ndarray]:
    """``base = F1`` (the answer segment's outcome) and per-call rewards ``[B, K]``
    (:func:`tepo_dense_call_rewards`, ``rl.tepo_alpha``) for the tool-level advantages."""
    why = "reward 'tepo_dense'"
    score = _f32(x.need("score_B", why))
    call_reward = tepo_dense_call_rewards(
        score, x.need("delta_entropy_BK", why), x.need("delta_valid_BK", why),
        x.need("num_calls_B", why), alpha=cfg.tepo_alpha)
    return score, call_reward


@REWARDS.register("autotool")
def _autotool(cfg, x: RewardInputs) -> tuple[np.ndarray, None]:
    """AutoTool's correctness × mode table (:func:`autotool_reward`, ``rl.autotool_rewards``)."""
    why = "reward 'autotool'"
    return autotool_reward(x.correct(why), x.need("short_mode_B", why), cfg.autotool_rewards), None
