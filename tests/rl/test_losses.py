"""PPO-clip / dual-clip, KL estimators, aggregation modes, AutoTool's entropy term and β_l."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.rl import losses as L

# Jitted once per shape/static choice (eager dispatch compiles every primitive separately).
aggregate = jax.jit(L.aggregate, static_argnums=2)
autotool_beta = jax.jit(L.autotool_beta,
                        static_argnames=("beta_short", "target_short", "target_long", "gate"))
kl_penalty = jax.jit(L.kl_penalty, static_argnames=("estimator", "clamp"))
ppo_clip_loss = jax.jit(L.ppo_clip_loss, static_argnames=("dual_clip",))
update_beta_long = jax.jit(L.update_beta_long, static_argnames=("beta_max",))
rl_loss = L.rl_loss  # called inside jit below (its options are Python values)

ONE = np.ones((1, 1), np.float32)


def _ppo(log_ratio, adv, **kw):
    kw = {"eps_low": 0.2, "eps_high": 0.2, **kw}
    lr = np.array([[log_ratio]], np.float32)
    return ppo_clip_loss(lr, np.zeros_like(lr), np.array([[adv]], np.float32), ONE, **kw)


@pytest.mark.parametrize("log_ratio,adv,kw,want", [
    (0.5, 1.0, {}, -1.2),  # r = 1.6487 clipped at 1.2 (unclipped would be -1.6487)
    (0.5, 1.0, {"eps_high": 0.28}, -1.28),  # clip-higher
    (np.log(0.5), 1.0, {}, -0.5),  # r < 1 - eps with A > 0: pessimistic = unclipped
    (np.log(0.5), -1.0, {}, 0.8),  # A < 0, r below range: clipped 0.8 (unclipped 0.5)
    (2.0, -1.0, {}, np.exp(2.0)),  # A < 0, huge r: 7.389 without dual clip
    (2.0, -1.0, {"dual_clip": 3.0}, 3.0),  # dual clip caps at -A*c = 3
    (0.0, 2.0, {"dual_clip": 3.0}, -2.0),  # dual clip leaves A > 0 alone
])
def test_ppo_golden(log_ratio, adv, kw, want):
    loss, _ = _ppo(log_ratio, adv, **kw)
    np.testing.assert_allclose(loss, [[want]], rtol=1e-5)


def test_ppo_gradient_zero_when_clipped_and_minus_a_when_not():
    def g(log_ratio, adv, **kw):
        f = lambda lp: ppo_clip_loss(lp, jnp.zeros((1, 1)), jnp.full((1, 1), adv), ONE,
                                     eps_low=0.2, eps_high=0.2, **kw)[0].sum()
        return float(jax.jit(jax.grad(f))(jnp.full((1, 1), log_ratio))[0, 0])

    assert g(0.5, 1.0) == 0.0  # clipped: no gradient
    np.testing.assert_allclose(g(0.0, 1.5), -1.5, rtol=1e-6)  # d(-A r)/dlogp = -A r
    assert g(2.0, -1.0, dual_clip=3.0) == 0.0  # dual-clipped: constant


def test_ppo_metrics_and_masking_are_nan_safe():
    logp = np.array([[0.5, -np.inf, 0.0]], np.float32)  # -inf on a padded token
    old = np.zeros((1, 3), np.float32)
    adv = np.ones((1, 3), np.float32)
    mask = np.array([[1, 0, 1]], np.float32)
    f = lambda lp: rl_loss(lp, jnp.zeros((1, 3)), old, adv, mask, agg="token_mean",
                           eps_low=0.2, eps_high=0.2)
    loss_sum, denom, m = jax.jit(f)(jnp.asarray(logp))
    np.testing.assert_allclose([loss_sum, denom], [-1.2 - 1.0, 2.0], rtol=1e-6)
    s, c = m["pg/clip_frac_high"]
    assert (float(s), float(c)) == (1.0, 2.0)
    grad = jax.jit(jax.grad(lambda lp: f(lp)[0]))(jnp.asarray(logp))
    np.testing.assert_array_equal(grad, [[0.0, 0.0, -1.0]])


@pytest.mark.parametrize("est,want", [
    ("k1", 1.0), ("k2", 0.5), ("k3", np.exp(-1.0) - 1.0 + 1.0)])
def test_kl_estimators_golden(est, want):
    # logp = -1, ref = -2: d = ref - logp = -1.
    got = kl_penalty(np.array([[-1.0]]), np.array([[-2.0]]), ONE, estimator=est)
    np.testing.assert_allclose(got, [[want]], rtol=1e-6)


def test_kl_clamped_and_k3_nonnegative():
    # d = -30 -> clipped to -20 -> k3 = e^-20 + 19 -> clamp 10 (unclamped would be 19.0 / 29).
    got = kl_penalty(np.array([[0.0]]), np.array([[-30.0]]), ONE, estimator="k3", clamp=10.0)
    np.testing.assert_allclose(got, [[10.0]])
    rng = np.random.default_rng(0)
    lp, ref = rng.normal(size=(2, 4, 9))
    assert np.all(np.asarray(kl_penalty(lp, ref, np.ones((4, 9)), estimator="k3")) >= 0)
    with pytest.raises(ValueError, match="k4"):
        L.kl_penalty(lp, ref, np.ones((4, 9)), estimator="k4")


LOSS = np.array([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0] * 4], np.float32)
MASK = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)


@pytest.mark.parametrize("mode,want_sum,want_denom", [
    ("token_mean", 10.0, 4.0),  # 2.5 (an unmasked mean would include the 99s)
    ("seq_mean_token_mean", 2.0 + 4.0, 2.0),  # 3.0; the empty row is not counted
    ("seq_mean_token_sum", 10.0, 2.0),  # 5.0
    ("constant", 10.0, 20.0),  # Dr.GRPO with L = 10: 0.5
])
def test_aggregation_golden(mode, want_sum, want_denom):
    s, d = aggregate(LOSS, MASK, mode, constant=10.0)
    np.testing.assert_allclose([s, d], [want_sum, want_denom], rtol=1e-6)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum",
                                  "constant"])
def test_aggregation_combines_exactly_over_micro_batches(mode):
    rng = np.random.default_rng(0)
    loss = rng.normal(size=(6, 7)).astype(np.float32)
    mask = (rng.uniform(size=(6, 7)) < 0.6).astype(np.float32)
    s, d = aggregate(loss, mask, mode, 7.0)
    parts = [aggregate(loss[i:i + 2], mask[i:i + 2], mode, 7.0) for i in (0, 2, 4)]
    np.testing.assert_allclose(sum(p[0] for p in parts) / sum(p[1] for p in parts), s / d,
                               rtol=1e-6)


def test_autotool_beta_gating():
    # Rows: short H=.05 (<= H_s), short H=.15 (> H_s), long H=.1 (<= H_l), long H=.3 (> H_l).
    ent = np.array([[0.05, 0.05], [0.15, 0.15], [0.1, 0.1], [0.3, 0.3]], np.float32)
    mode = np.array([1, 1, 0, 0])
    beta, h, long_ = autotool_beta(ent, np.ones((4, 2)), mode, 0.02, beta_short=0.5,
                                   target_short=0.1, target_long=0.2)
    np.testing.assert_allclose(beta, np.repeat([[0.5], [0.0], [0.02], [0.0]], 2, axis=1))
    np.testing.assert_allclose(h, [0.05, 0.15, 0.1, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(long_, [0, 0, 1, 1])


def test_autotool_token_gate():
    # One short row with token entropies (.05, .3): row mean .175 > H_s = .1, so the row gate
    # gives β = 0 on both tokens; the token gate keeps β_s on the .05 token only.
    ent = np.array([[0.05, 0.3]], np.float32)
    kw = dict(beta_short=0.5, target_short=0.1, target_long=0.2)
    row = autotool_beta(ent, np.ones((1, 2)), np.array([1]), 0.02, **kw)[0]
    tok = autotool_beta(ent, np.ones((1, 2)), np.array([1]), 0.02, gate="token", **kw)[0]
    np.testing.assert_allclose(row, [[0.0, 0.0]])
    np.testing.assert_allclose(tok, [[0.5, 0.0]])


def test_autotool_entropy_gradient_is_exactly_minus_beta():
    """Only −β_i·H_i carries entropy gradient; the gate H_i is stop-gradiented."""
    ent = jnp.array([[0.05, 0.15], [0.3, 0.1]], jnp.float32)  # row means .1 and .2
    mask = jnp.ones((2, 2))
    z = jnp.zeros((2, 2))
    at = dict(beta_short=0.5, target_short=0.1, target_long=0.2)

    def f(e, autotool):
        s, d, _ = rl_loss(z, e, z, z, mask, agg="seq_mean_token_mean", eps_low=0.2,
                          eps_high=0.2, short_mode_B=jnp.array([1, 0]), beta_long=0.04,
                          autotool=autotool)
        return s / d

    g = jax.jit(jax.grad(lambda e: f(e, at)))(ent)
    # row 0 short, H=.1 <= .1 -> β=.5; row 1 long, H=.2 <= .2 -> β=.04. seq-mean-token-mean:
    # dℓ/dH_t = -β_i / (n_i · rows) = -β_i / 4. A gate that carried gradient would differ.
    np.testing.assert_allclose(g, [[-0.125, -0.125], [-0.01, -0.01]], rtol=1e-6)
    no_term = jax.jit(jax.grad(lambda e: f(e, None)))(ent)  # no entropy term: zero gradient
    assert np.all(np.asarray(no_term) == 0)


def test_entropy_bonus_and_kl_in_rl_loss():
    z = jnp.zeros((1, 2))
    s, d, m = jax.jit(lambda: rl_loss(
        z, jnp.array([[1.0, 3.0]]), z, z, jnp.ones((1, 2)), agg="token_mean", eps_low=0.2,
        eps_high=0.2, entropy_coef=0.1, kl_coef=0.5, ref_logp_BT=jnp.array([[-1.0, 0.0]])))()
    # pg 0; entropy -0.1*(1+3); kl k3 with d=-1: e^-1 = .367879 (token 2: 0) times .5
    np.testing.assert_allclose(s, -0.4 + 0.5 * np.exp(-1.0), rtol=1e-6)
    assert float(d) == 2.0 and "kl/ref" in m
    with pytest.raises(ValueError, match="ref_logp_BT"):
        rl_loss(z, z, z, z, jnp.ones((1, 2)), agg="token_mean", eps_low=.2, eps_high=.2,
                kl_coef=0.1)


def test_beta_long_update_direction_and_clamp():
    below = (jnp.float32(-0.1 * 3), jnp.float32(3))  # mean_long(H_i - H_l) = -0.1
    above = (jnp.float32(0.2 * 2), jnp.float32(2))
    b = 0.01
    up = update_beta_long(b, below, lr=0.01, beta_max=1.0)
    down = update_beta_long(b, above, lr=0.01, beta_max=1.0)
    np.testing.assert_allclose([up, down], [0.011, 0.008], rtol=1e-5)
    assert float(update_beta_long(b, above, lr=1.0, beta_max=1.0)) == 0.0  # clamped at 0
    assert float(update_beta_long(b, (jnp.float32(0), jnp.float32(0)), lr=1.0,
                                  beta_max=1.0)) == pytest.approx(b)
