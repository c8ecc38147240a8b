"""GRPO / Dr.GRPO / RLOO / TEPO tool-level advantages: golden numbers and NumPy references."""

import jax
import numpy as np
import pytest

from toolrl_jax.rl import advantages as A

# Jitted once per shape: eager op-by-op dispatch would compile every primitive separately.
grpo_advantages = jax.jit(A.grpo_advantages, static_argnums=1, static_argnames=("eps", "ddof"))
dr_grpo_advantages = jax.jit(A.dr_grpo_advantages, static_argnums=1)
rloo_advantages = jax.jit(A.rloo_advantages, static_argnums=1)
broadcast_to_tokens = jax.jit(A.broadcast_to_tokens)
tepo_tool_advantages = jax.jit(A.tepo_tool_advantages, static_argnums=4,
                               static_argnames=("eps", "ddof"))


def test_grpo_golden_ddof1_and_ddof0():
    r = np.array([1, 0, 0, 0, 1, 1, 0, 0], np.float32)
    # Group 1: mean .25, unbiased std .5 -> (1.5, -.5, -.5, -.5); ddof=0 would give 1.732/-.577.
    # Group 2: mean .5, std sqrt(1/3) -> ±0.8660.
    s = np.sqrt(1 / 3)
    np.testing.assert_allclose(grpo_advantages(r, 4, eps=1e-9),
                               [1.5, -.5, -.5, -.5, .5 / s, .5 / s, -.5 / s, -.5 / s], rtol=1e-6)
    np.testing.assert_allclose(grpo_advantages(r[:4], 4, eps=1e-9, ddof=0)[0],
                               0.75 / np.sqrt(0.1875), rtol=1e-6)


def test_grpo_zero_variance_group_is_exactly_zero_and_g1_safe():
    np.testing.assert_array_equal(grpo_advantages(np.ones(4), 4), np.zeros(4))
    np.testing.assert_array_equal(grpo_advantages(np.array([3.0, 5.0]), 1), [0.0, 0.0])


def test_grpo_matches_numpy():
    rng = np.random.default_rng(1)
    r = rng.normal(size=24).astype(np.float32)
    g = r.reshape(4, 6)
    want = (g - g.mean(1, keepdims=True)) / (g.std(1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(grpo_advantages(r, 6),
                               want.reshape(-1), rtol=1e-5)


def test_dr_grpo_and_rloo_golden():
    r = np.array([1, 0, 0, 0], np.float32)
    np.testing.assert_allclose(dr_grpo_advantages(r, 4), [.75, -.25, -.25, -.25])
    # RLOO: R_i - mean of the others: (1 - 0, 0 - 1/3, ...). (R - mean would give .75 / -.25.)
    np.testing.assert_allclose(rloo_advantages(r, 4), [1, -1 / 3, -1 / 3, -1 / 3], rtol=1e-6)
    np.testing.assert_array_equal(rloo_advantages(r, 1), np.zeros(4))


def test_bad_group_size_raises():
    with pytest.raises(ValueError, match="multiple of group_size"):
        A.grpo_advantages(np.zeros(6), 4)


def test_broadcast_to_tokens():
    got = broadcast_to_tokens(np.array([2.0, -1.0]), np.array([[0, 1, 1], [1, 0, 0]]))
    np.testing.assert_array_equal(got, [[0, 2, 2], [-1, 0, 0]])


def test_tepo_tool_level_golden():
    # One group (G=2). Row 0: 2 calls (rewards 1.5, 1.0), F1 = 1. Row 1: 1 call (0.0), F1 = 0.
    call_r = np.array([[1.5, 1.0], [0.0, 0.0]], np.float32)
    n = np.array([2, 1])
    seg = np.array([[-1, 0, 0, -1, 1, -1, 2, 2], [-1, 0, 0, -1, 1, 1, -1, -1]])
    adv = np.asarray(tepo_tool_advantages(np.array([1.0, 0.0]), call_r, n, seg, 2, eps=0.0))
    # Pooled calls (1.5, 1.0, 0.0): mean 5/6, unbiased std sqrt(7/12) = 0.763763.
    s = np.sqrt(7 / 12)
    a = [(1.5 - 5 / 6) / s, (1.0 - 5 / 6) / s, (0.0 - 5 / 6) / s]  # .8729, .2182, -1.0911
    o = 1 / np.sqrt(2)  # outcome advantage of (1, 0): ±0.7071
    want = np.array([[0, a[0], a[0], 0, a[1], 0, o, o], [0, a[2], a[2], 0, -o, -o, 0, 0]])
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-7)


def test_tepo_tool_no_calls_is_outcome_grpo():
    seg = np.array([[0, 0], [0, 0], [0, -1], [0, 0]])
    r = np.array([1.0, 0.0, 0.0, 1.0])
    adv = tepo_tool_advantages(r, np.zeros((4, 3)), np.zeros(4, int), seg, 2)
    want = np.asarray(grpo_advantages(r, 2))[:, None] * (seg >= 0)
    np.testing.assert_allclose(adv, want, rtol=1e-6)


def test_tepo_tool_single_call_group_gets_zero_call_advantage():
    # One call in the whole group: no spread (std := 0) -> A_call = 0, not nan.
    seg = np.array([[0, 1], [0, 0]])
    adv = tepo_tool_advantages(np.array([1.0, 0.0]), np.array([[2.0], [0.0]]),
                               np.array([1, 0]), seg, 2)
    assert np.all(np.isfinite(adv)) and float(adv[0, 0]) == 0.0
