"""Sampler: exact categorical distribution, filters, and the recorded policy logprob/entropy."""

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.rollout.sampling import (
    filter_logits,
    first_argmax,
    inverse_cdf_sample,
    logprob_and_entropy,
    policy_distribution,
    prefix_sum,
    sample,
)


def test_inverse_cdf_matches_the_distribution():
    probs = np.array([0.5, 0.3, 0.15, 0.05, 0.0], np.float32)
    keys = jax.random.split(jax.random.key(0), 20000)
    draws = np.asarray(inverse_cdf_sample(jnp.asarray(probs)[None].repeat(20000, 0), keys))
    freq = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freq, probs, atol=0.012)  # ~4 sigma at n = 20000
    assert (draws != 4).all()  # a zero-probability token is never drawn


def test_top_k_and_top_p_filters():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isinf(np.asarray(filter_logits(logits, 1.0, 2, 1.0))[0, 2:]).all()
    kept = np.isfinite(np.asarray(filter_logits(logits, 1.0, 0, 0.75)))[0]
    assert kept.tolist() == [True, True, False, False]  # mass before token 2 is 0.8 >= 0.75


def test_recorded_logprob_and_entropy_are_the_policy_at_temperature_one():
    logits = jnp.asarray([[2.0, 1.0, -jnp.inf, 0.0]])
    tok, lp, ent = sample(logits, jax.random.split(jax.random.key(1), 1), temperature=0.5,
                          top_k=0, top_p=1.0, greedy=False)
    p = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(float(ent[0]), -(p * np.log(p)).sum(), rtol=1e-6)
    full = np.array([p[0], p[1], 0.0, p[2]])
    np.testing.assert_allclose(float(lp[0]), np.log(full[int(tok[0])]), rtol=1e-6)
    logp, _ = logprob_and_entropy(logits)
    assert np.isneginf(np.asarray(logp)[0, 2])


def test_two_level_search_matches_the_distribution_across_blocks():
    # V = 203 is not a multiple of the block (16): the last block is padded. Mass sits in
    # several blocks, with zero-probability tokens at block edges and in between.
    rng = np.random.default_rng(0)
    v = 203
    probs = np.zeros(v, np.float64)
    support = [0, 15, 16, 17, 40, 111, 127, 128, 190, 202]
    probs[support] = rng.uniform(0.5, 2.0, len(support))
    probs /= probs.sum()
    n = 60000
    keys = jax.random.split(jax.random.key(3), n)
    draws = np.asarray(inverse_cdf_sample(jnp.asarray(probs, jnp.float32)[None].repeat(n, 0),
                                          keys))
    assert set(np.unique(draws)) <= set(support)
    freq = np.bincount(draws, minlength=v) / n
    np.testing.assert_allclose(freq[support], probs[support], atol=4 * np.sqrt(0.25 / n))


def test_a_row_with_all_mass_on_one_token_always_draws_it():
    probs = jnp.zeros((64, 1000)).at[:, 999].set(1.0).at[:3, 999].set(0.0).at[:3, 0].set(1.0)
    draws = np.asarray(inverse_cdf_sample(probs, jax.random.split(jax.random.key(0), 64)))
    assert draws[:3].tolist() == [0, 0, 0] and (draws[3:] == 999).all()


def test_prefix_sum_and_first_argmax_match_numpy():
    x = np.random.default_rng(1).uniform(size=(5, 37)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(prefix_sum(jnp.asarray(x))), np.cumsum(x, -1),
                               rtol=1e-6)
    ties = np.array([[1.0, 3.0, 3.0, 0.0], [-np.inf, -np.inf, -1.0, -1.0]], np.float32)
    assert np.asarray(first_argmax(jnp.asarray(ties))).tolist() == [1, 2]
    np.testing.assert_array_equal(np.asarray(first_argmax(jnp.asarray(x))), x.argmax(-1))


def test_policy_distribution_matches_a_float64_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(scale=4.0, size=(6, 300)).astype(np.float32)
    x[:, ::7] = -np.inf  # masked vocabulary entries
    logp, p, ent = (np.asarray(a) for a in policy_distribution(jnp.asarray(x)))
    x64 = x.astype(np.float64)
    ref_p = np.exp(x64 - x64.max(-1, keepdims=True))
    ref_p /= ref_p.sum(-1, keepdims=True)
    finite = np.isfinite(x)
    np.testing.assert_allclose(p, ref_p, atol=1e-7)
    np.testing.assert_allclose(logp[finite], np.log(ref_p[finite]), atol=2e-5)
    assert np.isneginf(logp[~finite]).all() and (p[~finite] == 0).all()
    ref_ent = -np.sum(np.where(ref_p > 0, ref_p * np.log(np.where(ref_p > 0, ref_p, 1)), 0), -1)
    np.testing.assert_allclose(ent, ref_ent, atol=2e-5)
