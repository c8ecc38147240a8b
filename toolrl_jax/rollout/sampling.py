"""Per-row sampling that also returns the exact policy logprob and entropy of each sampled token.

The recorded logprob and entropy are those of the *policy* distribution (temperature 1, full
vocabulary), which is what the train step recomputes — not of the temperature / top-p / top-k
sampling distribution. Each row draws from its own key folded with its cache position, so a row's
sample depends only on its own history, never on which rows share the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def logprob_and_entropy(logits_BV):
    """``(log_softmax [B, V], entropy [B])`` in fp32; −inf (masked) entries contribute 0."""
    logp = jax.nn.log_softmax(logits_BV.astype(jnp.float32), axis=-1)
    p = jnp.exp(logp)
    entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    return logp, entropy


def filter_logits(logits_BV, temperature: float, top_k: int, top_p: float):
    """Applies temperature, then top-k, then nucleus (top-p) filtering; static knobs."""
    scaled = logits_BV.astype(jnp.float32) / temperature
    if top_k > 0 and top_k < scaled.shape[-1]:
        kth = jax.lax.top_k(scaled, top_k)[0][..., -1:]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    if top_p < 1.0:
        order = jnp.argsort(-scaled, axis=-1)
        sorted_logits = jnp.take_along_axis(scaled, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # Keep a token if the mass strictly before it is < top_p (the top token always stays).
        before = jnp.cumsum(probs, axis=-1) - probs
        keep_sorted = before < top_p
        keep = jnp.zeros_like(keep_sorted).at[
            jnp.arange(scaled.shape[0])[:, None], order].set(keep_sorted)
        scaled = jnp.where(keep, scaled, -jnp.inf)
    return scaled


def row_step_keys(row_keys_B, positions_B):
    """One key per row per position: fold the row's cache position into the row's own key."""
    return jax.vmap(jax.random.fold_in)(row_keys_B, positions_B)


def inverse_cdf_sample(logits_BV, keys_B):
    """Exact categorical sampling from one uniform per row: ``min{v : CDF(v) > u}``.

    Same distribution as ``jax.random.categorical`` but draws 1 random number per row instead
    of V Gumbel variates — on CPU the per-step random-bit generation otherwise dominates decode
    time for small models.
    """
    probs = jax.nn.softmax(logits_BV, axis=-1)
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys_B)
    u = u * cdf[:, -1]  # the cdf may end a hair below 1 in fp32
    idx = jnp.sum((cdf <= u[:, None]).astype(jnp.int32), axis=-1)
    # Never return a zero-probability token (u can land exactly on a flat stretch of the cdf).
    idx = jnp.minimum(idx, logits_BV.shape[-1] - 1)
    valid = probs[jnp.arange(probs.shape[0]), idx] > 0
    return jnp.where(valid, idx, jnp.argmax(logits_BV, axis=-1))


def sample(logits_BV, keys_B, *, temperature: float, top_k: int, top_p: float, greedy: bool):
    """Returns ``(tokens [B] int32, logp [B], entropy [B])`` for one step."""
    logp_BV, entropy_B = logprob_and_entropy(logits_BV)
    if greedy:
        tokens = jnp.argmax(logits_BV, axis=-1)
    else:
        filtered = filter_logits(logits_BV, temperature, top_k, top_p)
        tokens = inverse_cdf_sample(filtered, keys_B)
    tokens = tokens.astype(jnp.int32)
    token_logp = jnp.take_along_axis(logp_BV, tokens[:, None], axis=-1)[:, 0]
    return tokens, token_logp, entropy_B
