"""Bootstrap intervals over items and seeds: hand-computed cases and the normal approximation."""

import math

import numpy as np
import pytest

from toolrl_jax.eval.bootstrap import item_matrix, mean_interval, paired_difference


def _run(values, prefix="q"):
    return {f"{prefix}{i:04d}": float(v) for i, v in enumerate(values)}


def test_one_seed_matches_the_binomial_normal_approximation():
    # 1 seed, 2000 Bernoulli items at p ~ 0.3: the item bootstrap's 95 % interval is
    # p ± 1.96 sqrt(p (1 - p) / n) up to Monte-Carlo error.
    rng = np.random.default_rng(0)
    x = (rng.random(2000) < 0.3).astype(float)
    iv = mean_interval([_run(x)], replicates=20_000)
    p, half = x.mean(), 1.96 * math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert iv.estimate == pytest.approx(p)
    assert iv.low == pytest.approx(p - half, abs=0.003)
    assert iv.high == pytest.approx(p + half, abs=0.003)


def test_seed_noise_is_resampled():
    # Two seeds, one all wrong and one all right, on identical items: the replicate mean is the
    # share of draws of the right seed, 0, 1/2 or 1 with probability 1/4, 1/2, 1/4 — the 95 %
    # interval is [0, 1] although items alone would give a zero-width one.
    iv = mean_interval([_run([0] * 50), _run([1] * 50)], replicates=4000)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.0, 1.0)


def test_paired_difference_cancels_what_both_share():
    rng = np.random.default_rng(1)
    base = rng.random(300)  # item difficulty, shared
    same = paired_difference([_run(base)], [_run(base)])
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    shifted = paired_difference([_run(base + 0.1)], [_run(base)])
    assert shifted.estimate == pytest.approx(0.1)
    assert shifted.low == pytest.approx(0.1) and shifted.high == pytest.approx(0.1)
    assert shifted.excludes_zero()
    # Unpaired, the shared item spread would make the interval wide: the pairing is what makes
    # it narrow. Independent noise per side does widen it.
    noisy = paired_difference([_run(base + 0.1 + rng.normal(0, 0.05, 300))], [_run(base)])
    unpaired_half = 1.96 * math.sqrt(2 * base.var() / 300)
    assert noisy.high - noisy.low < unpaired_half  # ~0.011 vs ~0.046
    assert noisy.low < 0.1 < noisy.high


def test_difference_interval_includes_zero_without_an_effect():
    rng = np.random.default_rng(2)
    a = [_run(rng.random(200) < 0.4) for _ in range(3)]
    b = [_run(rng.random(200) < 0.4) for _ in range(3)]
    assert not paired_difference(a, b).excludes_zero()


def test_runs_on_different_items_are_an_error():
    with pytest.raises(ValueError, match="run 1 has no result for 1 item"):
        item_matrix([_run([1, 0, 1]), _run([1, 0])])
    with pytest.raises(ValueError, match="share no evaluated item"):
        paired_difference([_run([1, 0], "a")], [_run([1, 0], "b")])
