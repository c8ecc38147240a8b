"""TAO-RL post-tool shaping, the clipped exploration bonus, and the top-ρ forking-token mask."""

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.rl import shaping as S

# Jitted once per shape (eager dispatch compiles every primitive separately: slow on CPU).
masked_zscore = jax.jit(S.masked_zscore)
tao_post_tool_shaping = jax.jit(S.tao_post_tool_shaping)
entropy_advantage_bonus = jax.jit(S.entropy_advantage_bonus)
top_entropy_mask = jax.jit(S.top_entropy_mask, static_argnums=2)


def _random(seed=0, B=4, T=16):
    rng = np.random.default_rng(seed)
    adv = np.repeat(rng.normal(size=(B, 1)), T, axis=1).astype(np.float32)
    ent = rng.gamma(1.0, 1.0, size=(B, T)).astype(np.float32)
    valid = (rng.uniform(size=(B, T)) < 0.8).astype(np.float32)
    post = (rng.uniform(size=(B, T)) < 0.5).astype(np.float32)
    return adv * valid, ent, post, valid


def test_zscore_golden():
    z = masked_zscore(np.array([[1.0, 2.0, 3.0, 100.0]]), np.array([[1, 1, 1, 0]]), eps=0.0)
    # mean 2, population std sqrt(2/3); the invalid 100 must not enter (else mean 26.5).
    np.testing.assert_allclose(z, [[-np.sqrt(1.5), 0.0, np.sqrt(1.5), 0.0]], rtol=1e-6)


def test_tao_golden():
    adv = np.array([[2.0, 2.0, 2.0, 0.0]])
    ent = np.array([[1.0, 2.0, 3.0, 100.0]])
    valid = np.array([[1, 1, 1, 0]])
    post = np.array([[0, 0, 1, 1]])
    got = tao_post_tool_shaping(adv, ent, post, valid, coef=0.1, eps=0.0)
    # only t=2 is post-tool and valid: 2 * (1 + 0.1 * 1.224745) = 2.244949
    np.testing.assert_allclose(got, [[2.0, 2.0, 2.0 * (1 + 0.1 * np.sqrt(1.5)), 0.0]], rtol=1e-6)


def test_tao_equals_grpo_exactly_when_off():
    adv, ent, post, valid = _random()
    np.testing.assert_array_equal(tao_post_tool_shaping(adv, ent, post, valid, coef=0.0), adv)
    np.testing.assert_array_equal(
        tao_post_tool_shaping(adv, ent, np.zeros_like(post), valid, coef=0.3), adv)


def test_tao_keeps_sign_when_az_below_one():
    for seed in range(5):
        adv, ent, post, valid = _random(seed)
        z = np.asarray(masked_zscore(ent, valid))
        a = 0.99 / np.max(np.abs(z))  # |a z| < 1 everywhere
        got = np.asarray(tao_post_tool_shaping(adv, ent, post, valid, coef=a))
        np.testing.assert_array_equal(np.sign(got), np.sign(adv))
        assert not np.array_equal(got, adv)  # shaping did act


def test_exploration_bonus_golden():
    adv = np.array([[1.0, -1.0, -1.0, 0.0, 1.0]])
    ent = np.array([[2.0, 2.0, 0.5, 3.0, 2.0]])
    valid = np.array([[1, 1, 1, 1, 0]])
    got = entropy_advantage_bonus(adv, ent, valid, alpha=0.4, kappa=2.0)
    # min(.8, .5)=.5 -> 1.5 ; -1+.5 ; min(.2,.5)=.2 -> -.8 ; A=0 -> 0 ; invalid unchanged
    np.testing.assert_allclose(got, [[1.5, -0.5, -0.8, 0.0, 1.0]], rtol=1e-6)


def test_exploration_bonus_never_flips_sign():
    rng = np.random.default_rng(3)
    adv = rng.normal(size=(8, 32)).astype(np.float32)
    ent = rng.gamma(2.0, 3.0, size=(8, 32)).astype(np.float32)  # large entropies: bonus caps
    for kappa in (1.01, 2.0, 10.0):
        got = np.asarray(entropy_advantage_bonus(adv, ent, np.ones_like(adv), 5.0, kappa))
        np.testing.assert_array_equal(np.sign(got), np.sign(adv))


def test_shaping_is_stop_gradient_in_entropy():
    adv, ent, post, valid = _random()

    def f(e):
        return (jnp.sum(tao_post_tool_shaping(adv, e, post, valid, 0.5))
                + jnp.sum(entropy_advantage_bonus(adv, e, valid, 0.4, 2.0))
                + jnp.sum(top_entropy_mask(e, valid, 0.3)))

    assert np.all(np.asarray(jax.jit(jax.grad(f))(jnp.asarray(ent))) == 0)


def test_top_entropy_mask_golden_and_ties():
    ent = np.array([[5.0, 1.0, 4.0, 2.0, 3.0, 10.0]])
    mask = np.array([[1, 1, 1, 1, 1, 0]], np.float32)
    # n_valid = 5, ratio .4 -> k = 2: keep 5 and 4; the invalid 10 stays out.
    np.testing.assert_array_equal(top_entropy_mask(ent, mask, 0.4), [[1, 0, 1, 0, 0, 0]])
    # ratio .3 -> k = ceil(1.5) = 2 as well (floor would keep 1).
    np.testing.assert_array_equal(top_entropy_mask(ent, mask, 0.3), [[1, 0, 1, 0, 0, 0]])
    ties = np.array([[2.0, 2.0, 2.0, 1.0]])
    np.testing.assert_array_equal(top_entropy_mask(ties, np.ones((1, 4)), 0.25), [[1, 1, 1, 0]])
    np.testing.assert_array_equal(top_entropy_mask(ent, mask, 1.0), mask)


def test_top_entropy_mask_keeps_weights_and_fraction():
    rng = np.random.default_rng(0)
    ent = rng.normal(size=(4, 50)).astype(np.float32)  # distinct values: exact count
    mask = np.full((4, 50), 0.5, np.float32)
    got = np.asarray(top_entropy_mask(ent, mask, 0.2))
    assert (got > 0).sum() == 40 and set(np.unique(got)) == {0.0, 0.5}
    assert ent[got > 0].min() >= ent[got == 0].max()
