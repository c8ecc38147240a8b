"""The fused attention kernels (``model.attention``) against the reference grouped attention.

fp32, T = 256, right-padded rows (one empty), GQA with 4 query heads per KV head. On CPU "auto"
resolves to XLA's ``jax.nn.dot_product_attention``; the TPU splash kernel runs in the Pallas
interpreter. cuDNN needs a GPU and bf16: not exercised here.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.config import MeshConfig
from toolrl_jax.models.decoder import init_decoder
from toolrl_jax.models.layers import causal_attention, grouped_attention, resolve_attention
from toolrl_jax.sharding import make_mesh
from toolrl_jax.testing.tiny import tiny_qwen2_config

T = 256
LENGTHS = np.array([256, 200, 1, 0], np.int32)  # full, padded, a single token, empty


def _qkv(b=4, t=T, h=8, n=2, hd=32, seed=0):
    r = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(r.normal(size=(b, t, heads, hd)), jnp.float32)
               for heads in (h, n, n))
    return q, k, v


def _reference(q, k, v, lengths):
    t = q.shape[1]
    valid = np.arange(t)[None, :] < lengths[:, None]
    allowed = np.tril(np.ones((t, t), bool))[None] & valid[:, None, :] & valid[:, :, None]
    return np.asarray(grouped_attention(q, k, v, jnp.asarray(allowed)))


def test_float64_resolves_to_reference_and_refuses_fp32_softmax_kernels():
    """Every fused kernel takes its softmax in fp32: a float64 model gets the reference code,
    and naming a fused kernel for it is an error, not a silent fp32 softmax. (Only the dtype is
    read, so a numpy array stands in: this process runs without x64.)"""
    q = np.zeros((2, 128, 4, 128), np.float64)
    assert resolve_attention("auto", q, 2) == resolve_attention("reference", q, 2) == "reference"
    for impl in ("xla", "cudnn", "splash"):
        with pytest.raises(ValueError, match="softmax in fp32.*use 'reference'"):
            resolve_attention(impl, q, 2)


@pytest.mark.parametrize("impl", ["auto", "xla", "reference"])
def test_fast_path_matches_reference_fp32(impl):
    q, k, v = _qkv()
    assert resolve_attention("auto", q, 2) == "xla"  # CPU
    got = np.asarray(causal_attention(q, k, v, jnp.asarray(LENGTHS), impl))
    ref = _reference(q, k, v, LENGTHS)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    for b, n in enumerate(LENGTHS):  # padded query rows are exact zeros
        assert (got[b, n:] == 0).all()


def test_fast_path_gradients_match_reference():
    q, k, v = _qkv(t=128)
    lengths = jnp.asarray([128, 77, 1, 0], jnp.int32)

    def loss(impl):
        return lambda q, k, v: jnp.sum(jnp.sin(causal_attention(q, k, v, lengths, impl)))

    fast = jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)
    ref = jax.grad(loss("reference"), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(fast, ref):
        assert np.isfinite(np.asarray(a)).all()
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_splash_kernel_in_interpret_mode_matches_reference():
    """The TPU splash kernel's wiring (GQA vmaps, segment ids for padding, scale), run by the
    Pallas interpreter on CPU: numerics of the plumbing, not of a TPU."""
    q, k, v = _qkv(b=2, t=128, h=4, n=2, hd=128)
    lengths = np.array([128, 50], np.int32)
    got = np.asarray(causal_attention(q, k, v, jnp.asarray(lengths), "splash", interpret=True))
    np.testing.assert_allclose(got, _reference(q, k, v, lengths), atol=1e-5, rtol=0)
    assert (got[1, 50:] == 0).all()

    def loss(impl):
        return lambda *qkv: jnp.sum(jnp.sin(causal_attention(*qkv, jnp.asarray(lengths), impl,
                                                             interpret=True)))

    fast = jax.grad(loss("splash"), argnums=(0, 1, 2))(q, k, v)
    ref = jax.grad(loss("reference"), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-5)


def test_splash_under_a_mesh_runs_in_shard_map():
    """Under a (data=2, fsdp=2, tensor=2) mesh the kernel runs per shard inside shard_map."""
    q, k, v = _qkv(b=4, t=128, h=4, n=2, hd=128, seed=1)
    lengths = np.array([128, 3, 64, 100], np.int32)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    with jax.set_mesh(mesh):
        got = jax.jit(lambda q, k, v, n: causal_attention(q, k, v, n, "splash", interpret=True))(
            q, k, v, jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(got), _reference(q, k, v, lengths), atol=1e-5, rtol=0)


def test_decoder_fast_path_matches_reference_forward():
    """The whole model: attention="xla" vs "reference" logits on right-padded rows, GQA 4:1."""
    cfg = tiny_qwen2_config(num_heads=8, num_kv_heads=2, max_position=T)
    tokens = jax.random.randint(jax.random.key(0), (4, T), 0, cfg.vocab_size)
    mask = (np.arange(T)[None, :] < LENGTHS[:, None]).astype(np.int32)
    outs = {}
    for impl in ("xla", "reference"):
        model = init_decoder(dataclasses.replace(cfg, attention=impl), seed=2)
        outs[impl] = np.asarray(jax.jit(lambda t, m, model=model: model(t, m))(tokens, mask))
    assert np.isfinite(outs["xla"]).all()
    np.testing.assert_allclose(outs["xla"], outs["reference"], atol=1e-5, rtol=0)


def test_unknown_attention_is_refused():
    q, k, v = _qkv(t=8)
    with pytest.raises(ValueError, match="attention='flash'"):
        causal_attention(q, k, v, jnp.asarray(LENGTHS), "flash")
