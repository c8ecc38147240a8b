"""The log-prob / entropy head's two paths (full logits kept, T×V chunks recomputed) give the same
numbers as the naive reference, and the choice between them follows the shapes and the budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.config import MeshConfig
from toolrl_jax.rl.entropy import (
    balanced_chunk,
    choose_head,
    hidden_to_logp,
    hidden_to_logp_entropy,
    logits_to_logp_entropy,
)
from toolrl_jax.sharding import make_mesh
from toolrl_jax.train.steps import LogitHead

TEMP = 0.8


def _setup(B=3, T=11, D=16, V=48, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    h = jax.random.normal(k[0], (B, T, D))
    w = jax.random.normal(k[1], (D, V)) * 0.7
    vmask = (jnp.arange(V) % 5) != 2
    tg = jax.random.randint(k[2], (B, T), 0, V)
    tg = jnp.where(tg % 5 == 2, tg + 1, tg) % V
    return h, w, vmask, tg


def _objective(out):
    logp, ent = out
    return jnp.sum(logp * 0.7) + jnp.sum(ent * 1.3)


@pytest.mark.parametrize("full,chunk,vocab_chunk", [(True, 4, 0), (False, 4, 0), (False, 3, 16),
                                                    (False, 64, 0)])
def test_both_paths_match_naive_values_and_grads(full, chunk, vocab_chunk):
    h, w, vmask, tg = _setup()

    def naive(h, w):
        return logits_to_logp_entropy(jnp.where(vmask, h @ w, -jnp.inf), tg, temperature=TEMP)

    def head(h, w):
        return hidden_to_logp_entropy(h, w, tg, chunk=chunk, vocab_chunk=vocab_chunk,
                                      vocab_mask_V=vmask, temperature=TEMP, full=full)

    want, want_g = jax.jit(naive)(h, w), jax.jit(jax.grad(lambda h, w: _objective(naive(h, w)),
                                                          (0, 1)))(h, w)
    got, got_g = jax.jit(head)(h, w), jax.jit(jax.grad(lambda h, w: _objective(head(h, w)),
                                                       (0, 1)))(h, w)
    for x, y in zip(want, got, strict=True):
        assert y.shape == (3, 11) and y.dtype == jnp.float32
        np.testing.assert_allclose(y, x, atol=1e-5)
    for x, y in zip(want_g, got_g, strict=True):
        assert np.max(np.abs(np.asarray(x))) > 1e-2
        np.testing.assert_allclose(y, x, atol=1e-4)


@pytest.mark.parametrize("full,vocab_chunk", [(True, 0), (False, 0), (False, 16)])
def test_logp_only_equals_the_logp_of_the_full_head(full, vocab_chunk):
    h, w, vmask, tg = _setup(seed=1)
    want, _ = hidden_to_logp_entropy(h, w, tg, chunk=4, vocab_mask_V=vmask, temperature=TEMP)
    got = jax.jit(lambda h, w: hidden_to_logp(h, w, tg, chunk=4, vocab_chunk=vocab_chunk,
                                              vocab_mask_V=vmask, temperature=TEMP,
                                              full=full))(h, w)
    np.testing.assert_allclose(got, want, atol=1e-5)
    head = lambda x: jnp.where(vmask, x @ w, -jnp.inf)  # a callable head (tied embedding)
    np.testing.assert_allclose(hidden_to_logp(h, head, tg, chunk=4, temperature=TEMP, full=full),
                               want, atol=1e-5)


def test_full_path_keeps_logits_and_chunked_never_holds_them():
    B, T, D, V = 2, 64, 16, 1024
    args = (jax.ShapeDtypeStruct((B, T, D), jnp.float32), jax.ShapeDtypeStruct((D, V), jnp.float32))
    tg = jnp.zeros((B, T), jnp.int32)

    def hlo(full):
        fn = jax.grad(lambda h, w: _objective(hidden_to_logp_entropy(h, w, tg, chunk=8,
                                                                     full=full)), (0, 1))
        return jax.jit(fn).lower(*args).compile().as_text()

    assert f"f32[{B},{T},{V}]" in hlo(True)
    assert f"f32[{B},{T},{V}]" not in hlo(False)


def test_choice_follows_shapes_and_budget():
    mib = 2 ** 20
    # [64, 95, 4096] fp32 logits are 95 MiB: full under a 1 GiB budget, chunked under 8 MiB with
    # 8 positions (1 MiB each) per chunk, evened out over the 95 positions.
    assert choose_head(64, 95, 4096, 1024 * mib, 256) == (True, 95)
    assert choose_head(64, 95, 4096, 8 * mib, 256) == (False, balanced_chunk(95, 8))
    assert balanced_chunk(95, 8) == 8 and balanced_chunk(95, 256) == 95
    assert balanced_chunk(95, 64) == 48  # two chunks of 48, not 64 + 31 padded to 128
    assert choose_head(4, 2048, 151_936, 1024 * mib, 256) == (False, 256)  # max_chunk bounds it
    assert choose_head(64, 95, 4096, 1, 256) == (False, 1)  # at least one position
    assert choose_head(64, 95, 4096, 1024 * mib, 256, force_full=False)[0] is False
    assert choose_head(64, 95, 4096, 1, 256, force_full=True) == (True, 95)


def test_logit_head_divides_rows_over_the_mesh_and_validates_the_path():
    head = LogitHead(chunk=256, path="auto", block_mib=8)
    assert head.resolve(64, 95, 4096) == (False, 8)
    n = min(jax.device_count(), 8)
    with jax.set_mesh(make_mesh(MeshConfig(data=n), devices=jax.devices()[:n])):
        assert head.resolve(64, 95, 4096) == (False, balanced_chunk(95, 8 * n))
    with pytest.raises(ValueError, match="logit head path"):
        LogitHead(path="fast").resolve(1, 1, 1)
