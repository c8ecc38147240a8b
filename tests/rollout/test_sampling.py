"""Sampler: exact categorical distribution, filters, and the recorded policy logprob/entropy."""

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.rollout.sampling import filter_logits, inverse_cdf_sample, logprob_and_entropy, sample


def test_inverse_cdf_matches_the_distribution():
    probs = np.array([0.5, 0.3, 0.15, 0.05, 0.0], np.float32)
    logits = jnp.log(jnp.asarray(probs))[None].repeat(20000, 0)
    keys = jax.random.split(jax.random.key(0), 20000)
    draws = np.asarray(inverse_cdf_sample(logits, keys))
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
