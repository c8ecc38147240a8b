"""Host-side rewards: outcome, format, DAPO overlong, TEPO sparse/dense, AutoTool."""

import numpy as np
import pytest

from toolrl_jax.rl.rewards import (
    autotool_reward,
    format_reward,
    outcome_rewards,
    overlong_penalty,
    tepo_dense_call_rewards,
    tepo_sparse_reward,
)


def test_outcome_from_verifier_callable():
    exact = lambda p, r: p.strip() == r
    np.testing.assert_array_equal(outcome_rewards([" 4", "5"], ["4", "4"], exact), [1.0, 0.0])

    def f1(p, r):
        a, b = set(p.split()), set(r.split())
        common = len(a & b)
        return 0.0 if not common else 2 * common / (len(a) + len(b))

    np.testing.assert_allclose(outcome_rewards(["a b", "c"], ["a", "c"], f1), [2 / 3, 1.0])
    with pytest.raises(ValueError, match="references"):
        outcome_rewards(["a"], [], exact)


def test_format_reward():
    np.testing.assert_array_equal(format_reward([1, 0, 1], 0.5), [0.0, -0.5, 0.0])


def test_overlong_golden():
    # L_max = 100, buffer 20: free up to 80, linear to -1 at 100, -1 beyond.
    got = overlong_penalty([50, 80, 90, 100, 120], max_len=100, buffer=20)
    np.testing.assert_allclose(got, [0.0, 0.0, -0.5, -1.0, -1.0])
    np.testing.assert_array_equal(overlong_penalty([500], 100, 0), [0.0])


DELTA = np.array([[-1.0, -0.5, 0.0], [-1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0]], np.float32)
VALID = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], bool)
NCALLS = np.array([2, 2, 0, 2, 1])  # row 3: second call has no ΔH (budget end); row 4 likewise


def test_tepo_sparse_golden_and_edge_cases():
    f1 = np.array([0.8, 0.8, 0.8, 0.8, 0.8])
    got = tepo_sparse_reward(f1, DELTA, VALID, NCALLS, no_call_ratio=1.0)
    # row0 2/2 -> F1; row1 1/2; row2 no calls -> ratio 1; row3 1/2 (undefined call counts in n);
    # row4 0/1.
    np.testing.assert_allclose(got, [0.8, 0.4, 0.8, 0.4, 0.0], rtol=1e-6)
    got0 = tepo_sparse_reward(f1, DELTA, VALID, NCALLS, no_call_ratio=0.0)
    assert got0[2] == 0.0


def test_tepo_sparse_invariants():
    rng = np.random.default_rng(0)
    f1 = rng.uniform(size=16)
    n = rng.integers(1, 4, size=16)
    valid = np.arange(3)[None, :] < n[:, None]
    all_reduce = -rng.uniform(0.1, 1, size=(16, 3))
    np.testing.assert_allclose(tepo_sparse_reward(f1, all_reduce, valid, n), f1, rtol=1e-6)
    any_delta = rng.normal(size=(16, 3))
    np.testing.assert_array_equal(tepo_sparse_reward(np.zeros(16), any_delta, valid, n), 0.0)


def test_tepo_dense_golden_and_at_least_f1():
    f1 = np.array([0.8, 0.8, 0.8, 0.8, 0.8])
    got = tepo_dense_call_rewards(f1, DELTA, VALID, NCALLS, alpha=0.5)
    np.testing.assert_allclose(got, [[1.2, 1.2, 0], [1.2, 0.8, 0], [0, 0, 0], [1.2, 0.8, 0],
                                     [0.8, 0, 0]], rtol=1e-6)
    rng = np.random.default_rng(1)
    f1 = rng.uniform(size=32).astype(np.float32)  # rewards are fp32
    n = rng.integers(0, 4, size=32)
    exists = np.arange(3)[None, :] < n[:, None]
    r = tepo_dense_call_rewards(f1, rng.normal(size=(32, 3)), exists, n, alpha=0.7)
    assert np.all(r[exists] >= np.broadcast_to(f1[:, None], r.shape)[exists])


def test_autotool_reward_values_and_ordering():
    correct = np.array([1, 1, 0, 0])
    short = np.array([1, 0, 0, 1])
    got = autotool_reward(correct, short)
    np.testing.assert_array_equal(got, [1.0, 0.5, -0.5, -1.0])
    assert got[0] > got[1] > got[2] > got[3]  # correct-short > correct-long > wrong-long > ...
