"""Logprob + entropy: golden values, a NumPy reference, masked vocabulary, chunked == naive."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.rl.entropy import (
    _pick_vocab_chunk,
    hidden_to_logp_entropy,
    logits_to_logp_entropy,
)

LN2 = np.log(2.0)


def np_logp_entropy(logits, targets, temperature=1.0):
    """Independent reference: explicit softmax in float64, 0·log0 := 0."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - np.max(z, axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        logp_all = np.log(p)
    ent = -np.sum(np.where(p > 0, p * np.where(p > 0, logp_all, 0.0), 0.0), axis=-1)
    logp = np.take_along_axis(logp_all, np.asarray(targets)[..., None], -1)[..., 0]
    return logp, ent


def test_golden_two_way_and_masked_entry():
    # p = (1/2, 1/2, 0): H = ln 2 (a 0·(-inf) bug gives nan), logp = -ln 2.
    logits = jnp.array([[[0.0, 0.0, -jnp.inf]]])
    logp, ent = logits_to_logp_entropy(logits, jnp.array([[1]]))
    np.testing.assert_allclose(ent, [[LN2]], rtol=1e-6)
    np.testing.assert_allclose(logp, [[-LN2]], rtol=1e-6)


def test_golden_quarter_three_quarters_and_temperature():
    # p = (1/4, 3/4): H = -(.25 ln .25 + .75 ln .75) = 0.5623351446; logp(1) = ln .75.
    h = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    logp, ent = logits_to_logp_entropy(jnp.array([[[0.0, np.log(3.0)]]]), jnp.array([[1]]))
    np.testing.assert_allclose(ent, [[h]], rtol=1e-6)
    np.testing.assert_allclose(logp, [[np.log(0.75)]], rtol=1e-6)
    # Temperature 2 on logits (0, 2 ln 3) is the same distribution (a bug ignoring T gives 0.325).
    logp2, ent2 = logits_to_logp_entropy(jnp.array([[[0.0, 2 * np.log(3.0)]]]), jnp.array([[1]]),
                                         temperature=2.0)
    np.testing.assert_allclose(ent2, [[h]], rtol=1e-6)
    np.testing.assert_allclose(logp2, [[np.log(0.75)]], rtol=1e-6)


def test_large_logits_are_stable():
    logp, ent = logits_to_logp_entropy(jnp.array([[[1000.0, 1000.0, -1000.0]]]), jnp.array([[0]]))
    np.testing.assert_allclose(ent, [[LN2]], rtol=1e-6)  # naive exp overflows to nan
    np.testing.assert_allclose(logp, [[-LN2]], rtol=1e-6)


def test_matches_numpy_reference_with_masked_vocab():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)) * 3
    logits[..., [2, 7]] = -np.inf
    targets = rng.choice([0, 1, 3, 4, 5, 6, 8, 9, 10], size=(3, 5))
    logp, ent = logits_to_logp_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(targets),
                                       temperature=0.7)
    ref_logp, ref_ent = np_logp_entropy(logits, targets, 0.7)
    np.testing.assert_allclose(logp, ref_logp, atol=1e-5)
    np.testing.assert_allclose(ent, ref_ent, atol=1e-5)


def test_entropy_gradient_is_analytic_and_finite_with_masked_entries():
    # dH/dz_j = -p_j (log p_j + H); masked entries get exactly 0 (a naive where gives nan).
    z = jnp.array([[[0.3, -1.0, 2.0, -jnp.inf]]])
    g = jax.grad(lambda z: logits_to_logp_entropy(z, jnp.array([[0]]))[1].sum())(z)
    p = np.exp(np.array([0.3, -1.0, 2.0]))
    p /= p.sum()
    h = -(p * np.log(p)).sum()
    np.testing.assert_allclose(g[0, 0, :3], -p * (np.log(p) + h), rtol=1e-5)
    assert g[0, 0, 3] == 0.0


def test_masked_target_is_minus_inf():
    logp, ent = logits_to_logp_entropy(jnp.array([[[0.0, -jnp.inf]]]), jnp.array([[1]]))
    assert np.isneginf(logp[0, 0]) and ent[0, 0] == 0.0


def _setup(B=2, T=13, D=16, V=53, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    h = jax.random.normal(k[0], (B, T, D))
    w = jax.random.normal(k[1], (D, V)) * 0.7
    vmask = (jnp.arange(V) % 7) != 3  # masked vocabulary columns
    tg = jax.random.randint(k[2], (B, T), 0, V)
    tg = jnp.where(tg % 7 == 3, tg + 1, tg) % V  # targets on live columns
    return h, w, vmask, tg


def _objective(logp, ent):
    # Weighted sum so both outputs (and their relative scale) reach the gradient.
    return jnp.sum(logp * 0.7) + jnp.sum(ent * 1.3)


TEMP = 0.8


@functools.cache
def _naive_reference():
    h, w, vmask, tg = _setup()

    def naive(h, w):
        return logits_to_logp_entropy(jnp.where(vmask, h @ w, -jnp.inf), tg, temperature=TEMP)

    grads = jax.jit(jax.grad(lambda h, w: _objective(*naive(h, w)), (0, 1)))(h, w)
    return jax.jit(naive)(h, w), grads


# V = 53 (prime): whole V; 7 and 16 pad the head to 56 / 64 columns; 60 >= V means no V chunks.
@pytest.mark.parametrize("vocab_chunk", [0, 7, 16, 60])
def test_chunked_matches_naive_values_and_grads(vocab_chunk):
    h, w, vmask, tg = _setup()

    def chunked(h, w):
        return hidden_to_logp_entropy(h, w, tg, chunk=4, vocab_chunk=vocab_chunk,
                                      vocab_mask_V=vmask, temperature=TEMP)

    a, ga = _naive_reference()

    def both(h, w):
        value, grad = jax.value_and_grad(lambda h, w: _objective(*chunked(h, w)), (0, 1))(h, w)
        return chunked(h, w), grad

    b, gb = jax.jit(both)(h, w)
    for x, y in zip(a, b, strict=True):
        assert x.shape == (2, 13) and y.dtype == jnp.float32 and np.all(np.isfinite(y))
        np.testing.assert_allclose(y, x, atol=1e-5)
    for x, y in zip(ga, gb, strict=True):
        assert np.max(np.abs(np.asarray(x))) > 1e-2  # a dead gradient would pass trivially
        np.testing.assert_allclose(y, x, atol=1e-4)


def test_vocab_chunk_prefers_divisors():
    assert _pick_vocab_chunk(151_936, 16_384) == 9_496  # 151936 = 16 * 9496: no padded head copy
    assert _pick_vocab_chunk(151_936, 20_000) == 18_992
    assert _pick_vocab_chunk(53, 7) == 7  # prime V: pad
    assert _pick_vocab_chunk(50, 0) == 50 and _pick_vocab_chunk(50, 64) == 50


def test_chunked_callable_head_and_masked_target():
    h, w, vmask, tg = _setup(seed=1)
    tg = tg.at[0, 0].set(3)  # a masked target: -inf in both paths
    naive = jax.jit(logits_to_logp_entropy)(jnp.where(vmask, h @ w, -jnp.inf), tg)
    for vc in (0, 8):
        got = jax.jit(lambda h, w, vc=vc: hidden_to_logp_entropy(
            h, w, tg, chunk=5, vocab_chunk=vc, vocab_mask_V=vmask))(h, w)
        assert np.isneginf(got[0][0, 0])
        np.testing.assert_allclose(got[0][:, 1:], naive[0][:, 1:], atol=1e-5)
        np.testing.assert_allclose(got[1], naive[1], atol=1e-5)
    head = lambda x: jnp.where(vmask, x @ w, -jnp.inf)
    got = jax.jit(lambda h: hidden_to_logp_entropy(h, head, tg, chunk=13))(h)
    np.testing.assert_allclose(got[1], naive[1], atol=1e-5)
    with pytest.raises(ValueError, match="vocab_chunk"):
        hidden_to_logp_entropy(h, head, tg, chunk=4, vocab_chunk=8)


def test_chunked_never_materialises_full_fp32_logits():
    B, T, D, V, C = 2, 256, 32, 4096, 32
    h = jax.ShapeDtypeStruct((B, T, D), jnp.float32)
    w = jax.ShapeDtypeStruct((D, V), jnp.float32)
    tg = jax.ShapeDtypeStruct((B, T), jnp.int32)

    def grad_of(fn):
        return jax.jit(jax.grad(lambda h, w, t: _objective(*fn(h, w, t)), (0, 1)))

    naive = grad_of(lambda h, w, t: logits_to_logp_entropy(h @ w, t))
    chunked = grad_of(lambda h, w, t: hidden_to_logp_entropy(h, w, t, chunk=C))
    naive_c, chunked_c = naive.lower(h, w, tg).compile(), chunked.lower(h, w, tg).compile()
    hlo = chunked_c.as_text()
    assert f"f32[{B},{T},{V}]" not in hlo and f"f32[{B * T},{V}]" not in hlo
    assert f"f32[{B},{T},{V}]" in naive_c.as_text()  # the check can fail
    t_naive = naive_c.memory_analysis().temp_size_in_bytes
    t_chunk = chunked_c.memory_analysis().temp_size_in_bytes
    assert t_chunk * 4 < t_naive, (t_chunk, t_naive)


def test_chunked_under_batch_sharding_matches_unsharded():
    """The train step shards B over devices: the custom VJP must give the same values/grads."""
    from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

    n = min(jax.device_count(), 4)
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",), axis_types=(AxisType.Auto,))
    h, w, vmask, _ = _setup(B=n, T=8, seed=2)
    tg = jax.random.randint(jax.random.PRNGKey(5), (n, 8), 0, 53)

    def f(h, w):
        lp, ent = hidden_to_logp_entropy(h, w, tg, chunk=4, vocab_chunk=16, vocab_mask_V=vmask)
        return _objective(jnp.where(jnp.isfinite(lp), lp, 0.0), ent)

    ref = jax.jit(jax.value_and_grad(f, (0, 1)))(h, w)
    hs = jax.device_put(h, NamedSharding(mesh, PartitionSpec("data")))
    got = jax.jit(jax.value_and_grad(f, (0, 1)))(hs, w)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)
    for x, y in zip(got[1], ref[1], strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)
