"""Evaluation summaries: unbiased pass@k and per-bucket aggregation, hand-computed."""

import math

import pytest

from toolrl_jax.eval.runner import pass_at_k, summarize


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: some draw always passes


def _row(id_, diff, correct, calls, tokens, reducing=0, valid=0):
    return {"id": id_, "task": "arithmetic", "difficulty": diff, "correct": correct,
            "calls": calls, "ok_calls": calls, "tokens": tokens, "short": float(calls == 0),
            "reducing": reducing, "valid_deltas": valid, "delta_sum": -0.5 * reducing}


def test_summary_per_bucket():
    rows = [_row("a", "easy", 1.0, 0, 4), _row("b", "easy", 0.0, 1, 20, 1, 1),
            _row("c", "hard", 1.0, 2, 30, 1, 2), _row("d", "hard", 1.0, 1, 26, 0, 1)]
    out = summarize(rows)
    assert out["all"]["accuracy"] == 0.75 and out["all"]["tool_calls"] == 1.0
    assert out["easy"]["accuracy"] == 0.5 and out["easy"]["tokens"] == 12.0
    assert out["hard"]["tool_calls"] == 1.5
    assert out["all"]["entropy_reducing_share"] == pytest.approx(2 / 4)
    assert out["all"]["acc_per_100_tokens"] == pytest.approx(0.75 / 20 * 100)
    assert out["easy"]["short_mode_frac"] == 0.5
    assert math.isnan(summarize([_row("e", "easy", 0.0, 0, 3)])["all"]["entropy_reducing_share"])


def test_pass_at_k_in_summary():
    rows = [_row("a", "easy", c, 0, 5) for c in (1.0, 0.0, 0.0)]
    out = summarize(rows, samples=3)
    assert out["all"]["items"] == 1
    assert out["all"]["pass@3"] == 1.0 and out["all"]["avg@3"] == pytest.approx(1 / 3)
