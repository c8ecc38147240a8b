"""Row/group filters keep shapes static, count what they drop, and refill dropped groups."""

import numpy as np
import pytest

from toolrl_jax.rl.filters import (
    RefillRule,
    all_tools_failed,
    apply_filters,
    group_rows,
    refill,
    uniform_groups,
    void_turns,
)
from toolrl_jax.types import ToolStatus

OK, ERR, TO, EMPTY, INV = (int(s) for s in ToolStatus)


def test_all_tools_failed():
    status = np.array([[ERR, TO, -1], [ERR, OK, -1], [-1, -1, -1], [EMPTY, -1, -1],
                       [OK, -1, -1], [INV, ERR, ERR]])
    n = np.array([2, 2, 0, 1, 1, 3])
    # no-call rows are kept (row 2); a single OK call saves the row (rows 1, 4).
    np.testing.assert_array_equal(all_tools_failed(status, n), [1, 0, 0, 1, 0, 1])


def test_uniform_groups():
    np.testing.assert_array_equal(uniform_groups([1, 1, 0, 1, 0, 0, .5, .5 + 1e-9], 2),
                                  [1, 0, 1, 1])


def test_void_turns():
    status = np.array([[OK, -1], [INV, -1], [-1, -1], [-1, -1]])
    got = void_turns(["answer", "eos", "eos", "budget"], [True, True, False, False], status,
                     np.array([1, 1, 0, 0]))
    # row 1: unparseable call; row 2: stopped without an answer; row 3: truncated (not void).
    np.testing.assert_array_equal(got, [0, 1, 1, 0])


def test_apply_filters_counts_and_baseline_layout():
    G = 4
    correct = np.array([1, 0, 1, 0,  1, 1, 1, 1,  0, 1, 0, 0])  # group 1 all correct
    status = np.full((12, 2), -1)
    n = np.zeros(12, int)
    status[0], n[0] = [ERR, TO], 2  # all calls failed in a kept group
    status[5], n[5] = [ERR, -1], 1  # inside the dropped group: counted by both filters
    res = apply_filters(("all_tools_failed", "all_correct_or_wrong"), group_size=G,
                        reward_B=correct, correct_B=correct, call_status_BK=status,
                        num_calls_B=n)
    assert res.row_weight_B.shape == (12,)
    np.testing.assert_array_equal(res.row_weight_B, [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(res.group_keep_P, [1, 0, 1])
    assert res.counts == {"filter/all_tools_failed": 2, "filter/all_correct_or_wrong": 4,
                          "filter/rows_dropped": 5, "filter/groups_dropped": 1}


def test_apply_filters_errors_name_the_missing_input():
    with pytest.raises(ValueError, match="call_status_BK"):
        apply_filters(("all_tools_failed",), group_size=2, reward_B=np.zeros(4))
    with pytest.raises(ValueError, match="unknown filter"):
        apply_filters(("nope",), group_size=2, reward_B=np.zeros(4))


def test_refill_rule():
    rule = RefillRule(target_groups=8, oversample_factor=1.5, max_rounds=3)
    assert rule.prompts_to_request(0, 0) == 12
    assert rule.prompts_to_request(5, 1) == 5  # ceil(3 * 1.5)
    assert rule.prompts_to_request(8, 1) == 0
    assert rule.prompts_to_request(5, 3) == 0  # budget spent
    off = RefillRule(8, 1.5, 3, active=False)
    assert off.prompts_to_request(0, 0) == 8 and off.prompts_to_request(0, 1) == 0


def test_dynamic_sampling_removes_and_refills_uniform_groups():
    """Rounds of sampling until P informative groups survive, static shapes throughout."""
    P, G = 3, 2
    rule = RefillRule(P, oversample_factor=1.0, max_rounds=3)
    # Each round's correctness per group; uniform groups (all right / all wrong) must go.
    rounds = [np.array([[1, 1], [0, 1], [0, 0]]), np.array([[1, 0], [1, 1]]),
              np.array([[0, 1]])]
    pool, kept, r = [], 0, 0
    while (ask := rule.prompts_to_request(kept, r)):
        batch = rounds[r][:ask]
        res = apply_filters(("all_correct_or_wrong",), group_size=G, reward_B=batch.reshape(-1),
                            correct_B=batch.reshape(-1))
        pool.append(batch)
        kept += int(res.group_keep_P.sum())
        r += 1
    pool = np.concatenate(pool)
    keep = ~uniform_groups(pool.reshape(-1), G)
    idx, w = refill(keep, P)
    chosen = pool[idx]
    assert r == 3 and np.all(w == 1)
    assert all(0 < row.sum() < G for row in chosen)  # no all-correct / all-wrong group left
    np.testing.assert_array_equal(group_rows(idx, G), [2, 3, 6, 7, 10, 11])


def test_refill_pads_with_zero_weight_when_short():
    idx, w = refill(np.array([False, True, False]), 2)
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_array_equal(w, [1.0, 0.0])
    with pytest.raises(ValueError, match="fewer than the target"):
        refill(np.array([True]), 2)
