"""Per-row sampling that also returns the exact policy logprob and entropy of each sampled token.

The recorded logprob and entropy are those of the *policy* distribution (temperature 1, full
vocabulary), which is what the train step recomputes — not of the temperature / top-p / top-k
sampling distribution. Each row draws from its own key folded with its cache position, so a row's
sample depends only on its own history, never on which rows share the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def policy_distribution(logits_BV):
    """``(log_softmax [B, V], softmax [B, V], entropy [B])`` in fp32 from one exp pass.

    −inf (masked) entries get probability 0 and contribute 0 to the entropy. Computing the three
    together (entropy = log Z − Σ e·z / Z with z = x − max, e = exp z, Z = Σ e) saves the second
    exp over the vocabulary that ``exp(log_softmax)`` would cost in every decode step.
    """
    x = logits_BV.astype(jnp.float32)
    z = x - jnp.max(x, axis=-1, keepdims=True)
    e = jnp.exp(z)
    total = jnp.sum(e, axis=-1, keepdims=True)
    log_total = jnp.log(total)
    weighted = jnp.sum(jnp.where(e > 0, e * z, 0.0), axis=-1, keepdims=True)
    entropy = (log_total - weighted / total)[:, 0]
    return z - log_total, e / total, entropy


def logprob_and_entropy(logits_BV):
    """``(log_softmax [B, V], entropy [B])`` in fp32; −inf (masked) entries contribute 0."""
    logp, _, entropy = policy_distribution(logits_BV)
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


def first_argmax(x_BV):
    """``argmax`` over the last axis (first index of the maximum) from two plain reductions.

    XLA:CPU lowers ``jnp.argmax`` to a variadic (value, index) reduce that took 154 µs on a
    [64, 1024] block here — half a decode step of the demo model; this takes ~45 µs.
    """
    v = x_BV.shape[-1]
    top = jnp.max(x_BV, axis=-1, keepdims=True)
    iota = jax.lax.broadcasted_iota(jnp.int32, x_BV.shape, x_BV.ndim - 1)
    return jnp.minimum(jnp.min(jnp.where(x_BV == top, iota, v), axis=-1), v - 1)


def prefix_sum(x_BV):
    """Inclusive prefix sum over the last axis as a triangular matmul (fp32, HIGHEST precision).

    Same values as ``jnp.cumsum`` up to fp32 summation order; meant for short axes (the sampler's
    block totals and one block): ``jnp.cumsum`` lowers to a reduce-window on XLA:CPU (~130 µs on
    [64, 1024]). Each row is summed on its own.
    """
    n = x_BV.shape[-1]
    upper = jnp.triu(jnp.ones((n, n), jnp.float32))  # upper[i, j] = 1 where i <= j
    return jnp.matmul(x_BV.astype(jnp.float32), upper, precision=jax.lax.Precision.HIGHEST)


def _sample_block(v: int) -> int:
    """Block width of the two-level search: about sqrt(V), so both levels are short."""
    return max(8, 1 << max(0, (v - 1).bit_length() + 1) // 2)


def inverse_cdf_sample(probs_BV, keys_B):
    """Exact categorical sampling from one uniform per row: ``min{v : CDF(v) > u}``.

    Same distribution as ``jax.random.categorical`` but draws 1 random number per row instead
    of V Gumbel variates (on CPU the per-step random-bit generation otherwise dominates decode
    time for small models). The CDF is searched in two levels — which block of ~sqrt(V) tokens,
    then where inside it — so no length-V prefix sum is ever formed: the cost is one pass over
    the probabilities plus two short prefix sums.
    """
    b, v = probs_BV.shape
    block = _sample_block(v)
    nb = -(-v // block)
    probs = jnp.pad(probs_BV.astype(jnp.float32), ((0, 0), (0, nb * block - v)))
    blocks = probs.reshape(b, nb, block)
    block_mass = blocks.sum(-1)  # [B, nb]
    block_cdf = prefix_sum(block_mass)
    u = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys_B)
    u = u * block_cdf[:, -1]  # the cdf may end a hair below 1 in fp32
    j = jnp.minimum(jnp.sum((block_cdf <= u[:, None]).astype(jnp.int32), -1), nb - 1)
    start = jnp.take_along_axis(block_cdf - block_mass, j[:, None], -1)[:, 0]  # mass before j
    inner_cdf = prefix_sum(jnp.take_along_axis(blocks, j[:, None, None], 1)[:, 0])  # [B, block]
    k = jnp.minimum(jnp.sum((inner_cdf <= (u - start)[:, None]).astype(jnp.int32), -1),
                    block - 1)
    idx = jnp.minimum(j * block + k, v - 1)
    # Never return a zero-probability token: fp rounding between the two levels can push the
    # search onto a flat stretch of the CDF. Rare, so the argmax fallback runs only when needed.
    valid = jnp.take_along_axis(probs_BV, idx[:, None], axis=-1)[:, 0] > 0
    return jax.lax.cond(valid.all(), lambda: idx,
                        lambda: jnp.where(valid, idx, first_argmax(probs_BV)))


def sample(logits_BV, keys_B, *, temperature: float, top_k: int, top_p: float, greedy: bool):
    """Returns ``(tokens [B] int32, logp [B], entropy [B])`` for one step."""
    logp_BV, policy_BV, entropy_B = policy_distribution(logits_BV)
    if greedy:
        tokens = first_argmax(logits_BV)
    else:
        if temperature == 1.0 and top_k <= 0 and top_p >= 1.0:
            probs = policy_BV  # the sampling distribution is the policy: reuse it
        else:
            probs = jax.nn.softmax(filter_logits(logits_BV, temperature, top_k, top_p), axis=-1)
        tokens = inverse_cdf_sample(probs, keys_B)
    tokens = tokens.astype(jnp.int32)
    token_logp = jnp.take_along_axis(logp_BV, tokens[:, None], axis=-1)[:, 0]
    return tokens, token_logp, entropy_B
