"""Cached generation (prefill / extend / decode) must reproduce the full forward exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.models.decoder import KVCache, init_decoder
from toolrl_jax.testing.tiny import tiny_llama_config, tiny_qwen2_config

TOTAL = 24


@pytest.fixture(params=["qwen2", "llama"])
def model(request):
    cfg = {"qwen2": tiny_qwen2_config, "llama": tiny_llama_config}[request.param]()
    return init_decoder(cfg, seed=3)


def _tokens(vocab):
    return jax.random.randint(jax.random.key(0), (3, TOTAL), 0, vocab, dtype=jnp.int32)


def _gather(tokens, starts, width):
    idx = np.minimum(np.asarray(starts)[:, None] + np.arange(width)[None], TOTAL - 1)
    return jnp.take_along_axis(tokens, jnp.asarray(idx), axis=1)


def test_prefill_then_decode_matches_full_forward(model):
    tokens = _tokens(model.cfg.vocab_size)
    full = np.asarray(model(tokens))
    prompt_lens = np.array([5, 9, 2])  # rows of different lengths in one batch
    cache = KVCache.init(model.cfg, 3, 32)
    width = 12  # bucketed prefill width: rows are right-padded
    logits, cache = model.extend(_gather(tokens, [0, 0, 0], width), jnp.asarray(prompt_lens), cache)
    for b, n in enumerate(prompt_lens):
        np.testing.assert_allclose(np.asarray(logits)[b, :n], full[b, :n], atol=1e-5, rtol=0)
    pos = prompt_lens.copy()
    for _ in range(6):
        step, cache = model.extend(_gather(tokens, pos, 1), jnp.ones(3, jnp.int32), cache)
        for b in range(3):
            np.testing.assert_allclose(np.asarray(step)[b, 0], full[b, pos[b]], atol=1e-5, rtol=0)
        pos += 1
    np.testing.assert_array_equal(np.asarray(cache.lengths), pos)


def test_prefill_extend_decode_matches_full_forward(model):
    tokens = _tokens(model.cfg.vocab_size)
    full = np.asarray(model(tokens))
    cache = KVCache.init(model.cfg, 3, 32)
    prompt_lens = np.array([4, 7, 3])
    _, cache = model.extend(_gather(tokens, [0, 0, 0], 8), jnp.asarray(prompt_lens), cache)
    # Tool results of different lengths per row (row 2 gets none at all).
    ext_lens = np.array([6, 2, 0])
    ext, cache = model.extend(_gather(tokens, prompt_lens, 8), jnp.asarray(ext_lens), cache)
    for b in range(3):
        for t in range(ext_lens[b]):
            np.testing.assert_allclose(np.asarray(ext)[b, t], full[b, prompt_lens[b] + t],
                                       atol=1e-5, rtol=0)
    pos = prompt_lens + ext_lens
    for _ in range(4):
        step, cache = model.extend(_gather(tokens, pos, 1), jnp.ones(3, jnp.int32), cache)
        for b in range(3):
            np.testing.assert_allclose(np.asarray(step)[b, 0], full[b, pos[b]], atol=1e-5, rtol=0)
        pos += 1


def test_padding_never_leaks(model):
    """Changing pad tokens (and stale cache contents past a row's length) changes nothing."""
    tokens = _tokens(model.cfg.vocab_size)
    lens = jnp.asarray([3, 6, 1])
    cache = KVCache.init(model.cfg, 3, 16)
    a, _ = model.extend(tokens[:, :8], lens, cache)
    noisy = tokens[:, :8].at[:, 6:].set(7)
    garbage = KVCache(tuple(k + 5.0 for k in cache.k), tuple(v - 3.0 for v in cache.v),
                      cache.lengths)  # junk in unused slots
    b, _ = model.extend(noisy, lens, garbage)
    for r, n in enumerate([3, 6, 1]):
        np.testing.assert_allclose(np.asarray(a)[r, :n], np.asarray(b)[r, :n], atol=1e-6)


def test_full_cache_drops_writes_instead_of_wrapping(model):
    cache = KVCache.init(model.cfg, 1, 4)
    tokens = _tokens(model.cfg.vocab_size)[:1, :6]
    _, cache = model.extend(tokens, jnp.asarray([6]), cache)
    assert int(cache.lengths[0]) == 4
