"""Host-side rewards (NumPy, float32 ``[B]`` or ``[B, K]``).

Inputs are per-trajectory facts the host already holds: correctness or F1 from a verifier,
format validity, generated lengths (tokens), the AutoTool mode, and per-call ΔH from
:func:`toolrl_jax.rl.tool_entropy.call_entropy_deltas` (computed from the *sampler's* entropy, a
constant: rewards never carry gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


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
