"""Per-token logprob of the target and policy entropy, in fp32, from logits or hidden states.

Two entry points compute the same numbers:

* :func:`logits_to_logp_entropy` — the naive reference, from full ``[B, T, V]`` logits.
* :func:`hidden_to_logp_entropy` — from final hidden states and the LM head, chunked over T (and
  optionally over V with a streaming logsumexp) under ``jax.checkpoint``, so neither the forward
  nor the backward pass ever holds more than one ``[B, chunk, V]`` (or ``[B, chunk, vocab_chunk]``)
  block of fp32 logits. Differentiable: AutoTool's entropy term needs dH/dθ.

Masked vocabulary entries (``-inf`` logits, or ``vocab_mask_V = False``) have p = 0 and contribute
exactly 0 to the entropy and 0 to every gradient (no ``0 * inf = nan``): products with the logits
use a "safe" copy where masked entries are 0, the usual double-``where`` trick. Every row must keep
at least one unmasked entry. A *target* that is masked gets ``logp = -inf`` (its true value), so
callers must select with ``jnp.where(mask, logp, 0)``, never multiply ``logp * mask``.

Entropy is ``H = lse(z) - sum_v p_v z_v`` with ``z = logits / temperature`` (the sampling
distribution), computed from max-shifted logits so large logits do not lose precision.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
LMHead = Array | Callable[[Array], Array]


def _logp_entropy_block(z_NV: Array, targets_N: Array) -> tuple[Array, Array]:
    """Exact logp(target) and entropy over the last axis of fp32 logits (any leading shape)."""
    finite = jnp.isfinite(z_NV)
    m = jax.lax.stop_gradient(jnp.max(jnp.where(finite, z_NV, -jnp.inf), axis=-1, keepdims=True))
    shifted = jnp.where(finite, z_NV - m, -jnp.inf)  # <= 0 on live entries, -inf on masked ones
    e = jnp.exp(shifted)  # exp(-inf) = 0 with zero gradient
    s0 = jnp.sum(e, axis=-1)
    safe = jnp.where(finite, shifted, 0.0)  # keeps e * shifted at 0 (not nan) on masked entries
    s1 = jnp.sum(e * safe, axis=-1)
    log_s0 = jnp.log(s0)
    entropy = log_s0 - s1 / s0  # H = lse - E_p[z] with the shift m cancelling
    # A masked target gets logp = -inf (its true value); losses select it away with `where`.
    z_t = jnp.take_along_axis(shifted, targets_N[..., None], axis=-1)[..., 0]
    logp = z_t - log_s0
    return logp, entropy


def logits_to_logp_entropy(
    logits_BTV: Array, targets_BT: Array, *, temperature: float = 1.0
) -> tuple[Array, Array]:
    """Naive fp32 logprob of ``targets_BT`` and entropy, from full logits.

    Args:
      logits_BTV: logits at positions t (predicting ``targets_BT[:, t]``), any float dtype;
        ``-inf`` marks masked vocabulary entries.
      targets_BT: int token ids.
      temperature: the sampling temperature; both outputs describe ``softmax(logits / temp)``.

    Returns:
      ``(logp_BT, entropy_BT)`` in fp32, unmasked (callers apply their loss mask).
    """
    z = logits_BTV.astype(jnp.float32) / temperature
    return _logp_entropy_block(z, targets_BT.astype(jnp.int32))


def _head_logits(h_BcD: Array, lm_head: LMHead, temperature: float) -> Array:
    if callable(lm_head):
        z = lm_head(h_BcD)
    else:
        # fp32 accumulation without materialising an fp32 copy of a bf16 head.
        z = jax.lax.dot_general(h_BcD, lm_head, (((h_BcD.ndim - 1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32)
    return z.astype(jnp.float32) / temperature


def _streaming_vocab(h_BcD: Array, w_DV: Array, tgt_Bc: Array, vmask_V: Array | None,
                     vocab_chunk: int, temperature: float) -> tuple[Array, Array]:
    """Online logsumexp / entropy over V chunks (flash-style rescaling of running sums).

    Carries per token: running max m, s0 = sum e^(z-m), s1 = sum e^(z-m)(z-m), target logit.
    When the max moves from m to m': s0 *= r, s1 = r*(s1 + (m - m')*s0) with r = e^(m-m').
    """
    D, V = w_DV.shape
    n_v = -(-V // vocab_chunk)
    pad = n_v * vocab_chunk - V
    live_V = jnp.ones((V,), bool) if vmask_V is None else vmask_V.astype(bool)
    if pad:  # padded columns are masked, so they change nothing
        w_DV = jnp.pad(w_DV, ((0, 0), (0, pad)))
        live_V = jnp.pad(live_V, (0, pad))
    lead = h_BcD.shape[:-1]

    @jax.checkpoint
    def body(carry, i):
        m, s0, s1, zt = carry
        start = i * vocab_chunk
        w = jax.lax.dynamic_slice_in_dim(w_DV, start, vocab_chunk, axis=1)
        live = jax.lax.dynamic_slice_in_dim(live_V, start, vocab_chunk)
        z = _head_logits(h_BcD, w, temperature)
        finite = jnp.isfinite(z) & live
        cmax = jnp.max(jnp.where(finite, z, -jnp.inf), axis=-1)
        m_new = jax.lax.stop_gradient(jnp.maximum(m, cmax))
        m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # all-masked so far: nothing summed
        shifted = jnp.where(finite, z - m_safe[..., None], -jnp.inf)
        e = jnp.exp(shifted)
        safe = jnp.where(finite, shifted, 0.0)
        delta = jnp.where(jnp.isfinite(m), m - m_safe, 0.0)  # (m - m') <= 0; 0 before any mass
        r = jnp.exp(delta)
        s1 = r * (s1 + delta * s0) + jnp.sum(e * safe, axis=-1)
        s0 = r * s0 + jnp.sum(e, axis=-1)
        local = tgt_Bc - start
        hit = (local >= 0) & (local < vocab_chunk)
        z_dead = jnp.where(finite, z, -jnp.inf)
        zt_chunk = jnp.take_along_axis(z_dead, jnp.clip(local, 0, vocab_chunk - 1)[..., None],
                                       axis=-1)[..., 0]
        zt = jnp.where(hit, zt_chunk, zt)
        return (m_new, s0, s1, zt), None

    init = (jnp.full(lead, -jnp.inf, jnp.float32), jnp.zeros(lead, jnp.float32),
            jnp.zeros(lead, jnp.float32), jnp.full(lead, -jnp.inf, jnp.float32))
    (m, s0, s1, zt), _ = jax.lax.scan(body, init, jnp.arange(n_v))
    log_s0 = jnp.log(s0)
    entropy = log_s0 - s1 / s0
    logp = zt - m - log_s0
    return logp, entropy


def hidden_to_logp_entropy(
    hidden_BTD: Array,
    lm_head: LMHead,
    targets_BT: Array,
    *,
    chunk: int,
    vocab_chunk: int = 0,
    vocab_mask_V: Array | None = None,
    temperature: float = 1.0,
) -> tuple[Array, Array]:
    """Chunked, exact, differentiable fp32 logprob + entropy from final hidden states.

    Equal (to fp32 rounding) to ``logits_to_logp_entropy(hidden @ W, targets)``, with peak logits
    memory ``B * chunk * V`` (or ``B * chunk * vocab_chunk``) fp32 instead of ``B * T * V``.

    Chunks run over T (not over B*T) so a batch sharded over B stays sharded inside every chunk.

    Args:
      hidden_BTD: final (post-norm) hidden states, any float dtype.
      lm_head: the ``[D, V]`` head weight, or a callable ``h_BcD -> logits_BcV`` (e.g. a tied
        embedding's ``attend``). V chunking needs the weight array.
      targets_BT: int token ids to score at each position.
      chunk: positions per T-chunk (``train.logit_chunk``); T is padded up to a multiple.
      vocab_chunk: columns per V-chunk for the streaming logsumexp; 0 = whole vocabulary.
      vocab_mask_V: optional bool ``[V]``; False entries are excluded from the distribution
        (padded vocabulary rows of the head).
      temperature: sampling temperature.

    Returns:
      ``(logp_BT, entropy_BT)`` fp32.
    """
    B, T, D = hidden_BTD.shape
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    if vocab_chunk and callable(lm_head):
        raise ValueError("vocab_chunk needs the [D, V] head weight, not a callable")
    n_t = -(-T // chunk)
    pad = n_t * chunk - T
    targets_BT = targets_BT.astype(jnp.int32)
    if pad:
        hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
        targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
    # [n_t, B, chunk, ...]: scan over T-chunks, B kept whole (and sharded) inside each chunk.
    h_chunks = hidden_BTD.reshape(B, n_t, chunk, D).swapaxes(0, 1)
    t_chunks = targets_BT.reshape(B, n_t, chunk).swapaxes(0, 1)

    @jax.checkpoint  # backward recomputes one chunk's logits instead of storing all of them
    def one_chunk(h_BcD, tgt_Bc):
        if vocab_chunk:
            return _streaming_vocab(h_BcD, lm_head, tgt_Bc, vocab_mask_V, vocab_chunk,
                                    temperature)
        z = _head_logits(h_BcD, lm_head, temperature)
        if vocab_mask_V is not None:
            z = jnp.where(vocab_mask_V.astype(bool), z, -jnp.inf)
        return _logp_entropy_block(z, tgt_Bc)

    def body(_, xs):
        return None, one_chunk(*xs)

    _, (logp, ent) = jax.lax.scan(body, None, (h_chunks, t_chunks))
    logp_BT = logp.swapaxes(0, 1).reshape(B, n_t * chunk)[:, :T]
    ent_BT = ent.swapaxes(0, 1).reshape(B, n_t * chunk)[:, :T]
    return logp_BT, ent_BT
