"""Per-token logprob of the target and policy entropy, in fp32, from logits or hidden states.

Two entry points compute the same numbers:

* :func:`logits_to_logp_entropy` — the naive reference, from full ``[B, T, V]`` logits.
* :func:`hidden_to_logp_entropy` — from final hidden states and the LM head, chunked over T and
  optionally over V (streaming logsumexp), so neither the forward nor the backward pass ever
  holds more than one ``[B, chunk, V]`` (or ``[B, chunk, vocab_chunk]``) block of fp32 logits.
  Differentiable (AutoTool's entropy term needs dH/dθ). For a ``[D, V]`` head the gradient is an
  explicit VJP that, like ``jax.checkpoint``, recomputes each logits block in the backward pass,
  but with the analytic ``dz`` (one fused elementwise pass) and an in-place ``dW`` accumulator:
  autodiff through the chunk would keep several ``[B, chunk, V]`` temporaries alive. A callable
  head (e.g. a tied embedding's ``attend``) takes the generic ``jax.checkpoint`` + autodiff path.

Masked vocabulary entries (``-inf`` logits, or ``vocab_mask_V = False``) have p = 0 and contribute
exactly 0 to the entropy and 0 to every gradient (no ``0 * inf = nan``): products with the logits
use a "safe" copy where masked entries are 0, the usual double-``where`` trick. Every row must keep
at least one unmasked entry. A *target* that is masked gets ``logp = -inf`` (its true value), so
callers must select with ``jnp.where(mask, logp, 0)``, never multiply ``logp * mask``.

Entropy is ``H = lse(z) - sum_v p_v z_v`` with ``z = logits / temperature`` (the sampling
distribution), computed from max-shifted logits so large logits do not lose precision.
"""

from __future__ import annotations

import functools
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


def _pick_vocab_chunk(V: int, requested: int) -> int:
    """Columns per V-chunk: the whole V when off (0) or >= V; else the largest divisor of V in
    [requested/2, requested] (no padded copy of the head); else ``requested`` (head is padded)."""
    if requested <= 0 or requested >= V:
        return V
    for d in range(requested, (requested + 1) // 2 - 1, -1):
        if V % d == 0:
            return d
    return requested


def _lift(x_V: Array, ndim: int) -> Array:
    """``[V] -> [1, …, 1, V]`` with ``ndim`` dims, to broadcast against ``[..., V]`` logits."""
    return x_V.reshape((1,) * (ndim - 1) + x_V.shape)


def _vocab_slices(w_DV: Array, live_V: Array, i: Array, vc: int) -> tuple[Array, Array]:
    return (jax.lax.dynamic_slice_in_dim(w_DV, i * vc, vc, axis=1),
            jax.lax.dynamic_slice_in_dim(live_V, i * vc, vc))


def _online_forward(h_BcD, w_DV, tgt_Bc, live_V, vc: int, temperature: float,
                    entropy: bool = True):
    """Exact logp / entropy / lse of one T-chunk, streaming over V chunks (flash-style).

    Carries per token: running max m, s0 = Σ e^(z-m), s1 = Σ e^(z-m)(z-m), target logit. When the
    max moves from m to m': s0 *= r, s1 = r (s1 + (m - m') s0) with r = e^(m-m'). At the end
    lse = m + log s0 and H = log s0 - s1/s0. ``entropy=False`` skips s1 (H is returned as 0):
    the reference pass needs log-probs only.
    """
    lead = h_BcD.shape[:-1]

    def body(carry, i):
        m, s0, s1, zt = carry
        w, live = _vocab_slices(w_DV, live_V, i, vc)
        z = _head_logits(h_BcD, w, temperature)
        finite = jnp.isfinite(z) & _lift(live, z.ndim)
        m_new = jnp.maximum(m, jnp.max(jnp.where(finite, z, -jnp.inf), axis=-1))
        m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # nothing live yet: nothing summed
        shifted = jnp.where(finite, z - m_safe[..., None], -jnp.inf)
        e = jnp.exp(shifted)
        delta = jnp.where(jnp.isfinite(m), m - m_safe, 0.0)  # (m - m') <= 0
        r = jnp.exp(delta)
        if entropy:
            s1 = r * (s1 + delta * s0) + jnp.sum(e * jnp.where(finite, shifted, 0.0), axis=-1)
        s0 = r * s0 + jnp.sum(e, axis=-1)
        local = tgt_Bc - i * vc
        hit = (local >= 0) & (local < vc)
        z_dead = jnp.where(finite, z, -jnp.inf)  # a masked target scores -inf
        zt_chunk = jnp.take_along_axis(z_dead, jnp.clip(local, 0, vc - 1)[..., None], -1)[..., 0]
        return (m_new, s0, s1, jnp.where(hit, zt_chunk, zt)), None

    neg = jnp.full(lead, -jnp.inf, jnp.float32)
    zero = jnp.zeros(lead, jnp.float32)
    (m, s0, s1, zt), _ = jax.lax.scan(body, (neg, zero, zero, neg),
                                      jnp.arange(w_DV.shape[1] // vc))
    log_s0 = jnp.log(s0)
    lse = m + log_s0
    return zt - lse, log_s0 - s1 / s0, lse


def _logits_cotangent(z_NV, live_V, local_tgt_N, lse_N, ent_N, g_lp_N, g_ent_N,
                      temperature: float):
    """``dz`` of a block of fp32 logits ``z_NV`` (already divided by the temperature; any leading
    shape N) given the cotangents of logp and H: with p = e^(z - lse),
    dz = g_lp (1{j=t} - p) - g_H p (z - lse + H), then ÷ temperature; masked columns get 0.
    ``local_tgt_N`` is the target's column within this block (out of range: not in it)."""
    finite = jnp.isfinite(z_NV) & _lift(live_V, z_NV.ndim)
    logp_all = jnp.where(finite, z_NV - lse_N[..., None], 0.0)
    p = jnp.where(finite, jnp.exp(logp_all), 0.0)
    onehot = (_lift(jnp.arange(z_NV.shape[-1]), z_NV.ndim) == local_tgt_N[..., None]) & finite
    return (g_lp_N[..., None] * (onehot - p)
            - g_ent_N[..., None] * p * (logp_all + ent_N[..., None])) / temperature


def _chunk_backward(h_BcD, w_DV, tgt_Bc, live_V, lse_Bc, ent_Bc, g_lp, g_ent, dw_DV, vc: int,
                    temperature: float):
    """Gradients of one T-chunk, recomputing logits one V-chunk at a time.

    With p = e^(z - lse): ∂logp_t/∂z_j = 1{j=t} - p_j and ∂H/∂z_j = -p_j (z_j - lse + H), so
    dz = g_lp (1{j=t} - p) - g_H p (z - lse + H); masked columns have p = 0 and get 0.
    ``dw_DV`` (fp32) is accumulated in place, slice by slice.
    """
    def body(carry, i):
        dh, dw = carry
        w, live = _vocab_slices(w_DV, live_V, i, vc)
        z = _head_logits(h_BcD, w, temperature)
        dz = _logits_cotangent(z, live, tgt_Bc - i * vc, lse_Bc, ent_Bc, g_lp, g_ent, temperature)
        dh = dh + jax.lax.dot_general(dz, w, (((dz.ndim - 1,), (1,)), ((), ())),
                                      preferred_element_type=jnp.float32)
        dw_chunk = jax.lax.dot_general(h_BcD, dz, ((tuple(range(h_BcD.ndim - 1)),
                                                    tuple(range(dz.ndim - 1))), ((), ())),
                                       preferred_element_type=jnp.float32)
        old = jax.lax.dynamic_slice_in_dim(dw, i * vc, vc, axis=1)
        dw = jax.lax.dynamic_update_slice_in_dim(dw, old + dw_chunk, i * vc, axis=1)
        return (dh, dw), None

    dh0 = jnp.zeros(h_BcD.shape, jnp.float32)
    (dh, dw_DV), _ = jax.lax.scan(body, (dh0, dw_DV), jnp.arange(w_DV.shape[1] // vc))
    return dh, dw_DV


def _to_chunks(x_BT, chunk):  # [B, n*chunk, ...] -> [n, B, chunk, ...]
    B, T = x_BT.shape[:2]
    return x_BT.reshape(B, T // chunk, chunk, *x_BT.shape[2:]).swapaxes(0, 1)


def _from_chunks(x_nBc):  # [n, B, chunk, ...] -> [B, n*chunk, ...]
    n, B, c = x_nBc.shape[:3]
    return x_nBc.swapaxes(0, 1).reshape(B, n * c, *x_nBc.shape[3:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _head_logp_entropy(h_BTD, w_DV, tgt_BT, live_V, chunk, vc, temperature):
    return _head_fwd(h_BTD, w_DV, tgt_BT, live_V, chunk, vc, temperature)[0]


def _head_fwd(h_BTD, w_DV, tgt_BT, live_V, chunk, vc, temperature):
    def body(_, xs):
        return None, _online_forward(xs[0], w_DV, xs[1], live_V, vc, temperature)

    _, (lp, ent, lse) = jax.lax.scan(body, None, (_to_chunks(h_BTD, chunk),
                                                  _to_chunks(tgt_BT, chunk)))
    lp, ent, lse = _from_chunks(lp), _from_chunks(ent), _from_chunks(lse)
    # Residuals are [B, T]-sized plus the inputs: no logits survive the forward pass.
    return (lp, ent), (h_BTD, w_DV, tgt_BT, live_V, lse, ent)


def _head_bwd(chunk, vc, temperature, res, g):
    h_BTD, w_DV, tgt_BT, live_V, lse, ent = res
    g_lp, g_ent = (jnp.where(jnp.isfinite(x), x, 0.0).astype(jnp.float32) for x in g)

    def body(dw, xs):
        h, tgt, lse_c, ent_c, gl, ge = xs
        dh, dw = _chunk_backward(h, w_DV, tgt, live_V, lse_c, ent_c, gl, ge, dw, vc,
                                 temperature)
        return dw, dh

    xs = tuple(_to_chunks(x, chunk) for x in (h_BTD, tgt_BT, lse, ent, g_lp, g_ent))
    dw, dh = jax.lax.scan(body, jnp.zeros(w_DV.shape, jnp.float32), xs)
    return (_from_chunks(dh).astype(h_BTD.dtype), dw.astype(w_DV.dtype), None, None)


_head_logp_entropy.defvjp(_head_fwd, _head_bwd)


def _full_stats(z_NV, live_V, tgt_N):
    """``(logp, entropy, lse)`` of fp32 logits over the last axis (masked columns excluded)."""
    finite = jnp.isfinite(z_NV) & _lift(live_V, z_NV.ndim)
    m = jnp.max(jnp.where(finite, z_NV, -jnp.inf), axis=-1, keepdims=True)
    shifted = jnp.where(finite, z_NV - m, -jnp.inf)
    e = jnp.exp(shifted)
    s0 = jnp.sum(e, axis=-1)
    s1 = jnp.sum(e * jnp.where(finite, shifted, 0.0), axis=-1)
    log_s0 = jnp.log(s0)
    z_t = jnp.take_along_axis(shifted, tgt_N[..., None], axis=-1)[..., 0]
    return z_t - log_s0, log_s0 - s1 / s0, m[..., 0] + log_s0


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _full_logp_entropy(h_BTD, w_DV, tgt_BT, live_V, temperature):
    return _full_fwd(h_BTD, w_DV, tgt_BT, live_V, temperature)[0]


def _full_fwd(h_BTD, w_DV, tgt_BT, live_V, temperature):
    z = _head_logits(h_BTD, w_DV, temperature)
    logp, ent, lse = _full_stats(z, live_V, tgt_BT)
    # The logits are the residual: the backward pass does not recompute them (the whole point
    # of this path; it runs only when B·T·V fp32 fits the memory budget).
    return (logp, ent), (h_BTD, w_DV, tgt_BT, live_V, z, lse, ent)


def _full_bwd(temperature, res, g):
    h_BTD, w_DV, tgt_BT, live_V, z, lse, ent = res
    g_lp, g_ent = (jnp.where(jnp.isfinite(x), x, 0.0).astype(jnp.float32) for x in g)
    dz = _logits_cotangent(z, live_V, tgt_BT, lse, ent, g_lp, g_ent, temperature)
    # Rows flattened to one [B·T] axis: XLA:CPU then runs both products as plain GEMMs.
    n = h_BTD.shape[0] * h_BTD.shape[1]
    dz_NV = dz.reshape(n, dz.shape[-1])
    dh = jax.lax.dot_general(dz_NV, w_DV, (((1,), (1,)), ((), ())),
                             preferred_element_type=jnp.float32)
    dw = jax.lax.dot_general(h_BTD.reshape(n, h_BTD.shape[-1]), dz_NV, (((0,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)
    return (dh.reshape(h_BTD.shape).astype(h_BTD.dtype), dw.astype(w_DV.dtype), None, None)


_full_logp_entropy.defvjp(_full_fwd, _full_bwd)

def choose_head(rows: int, positions: int, vocab: int, block_bytes: int, max_chunk: int,
                force_full: bool | None = None) -> tuple[bool, int]:
    """``(full, chunk)`` of the head for one device's ``[rows, positions]`` tokens.

    Full — the whole ``[rows, positions, V]`` fp32 logits in one block, kept for the backward
    pass (3 head matmuls, no recomputation) — when that block fits ``block_bytes``; else
    T-chunks of the most positions (≤ ``max_chunk``, ≥ 1) whose ``[rows, chunk, V]`` block fits,
    logits recomputed in the backward pass (4 matmuls, memory bounded by one block).
    ``force_full`` True / False overrides the choice (a config override); None decides.
    """
    per_position = 4 * max(rows, 1) * vocab
    fits = max(1, min(max_chunk, block_bytes // per_position))
    full = per_position * positions <= block_bytes if force_full is None else force_full
    return (True, positions) if full else (False, balanced_chunk(positions, fits))


def balanced_chunk(positions: int, chunk: int) -> int:
    """Positions per T-chunk: as many chunks as ``chunk`` asks for, but evened out so padding
    is under one chunk's rounding (95 positions at chunk 256 → one chunk of 95, not 256; at
    chunk 64 → two of 48), since padded positions cost as much as real ones."""
    n = -(-positions // max(chunk, 1))
    return -(-positions // n)


def hidden_to_logp_entropy(
    hidden_BTD: Array,
    lm_head: LMHead,
    targets_BT: Array,
    *,
    chunk: int,
    vocab_chunk: int = 0,
    vocab_mask_V: Array | None = None,
    temperature: float = 1.0,
    full: bool = False,
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
      vocab_chunk: columns per V-chunk for the streaming logsumexp (``rl.vocab_chunk``); 0 or
        >= V = whole vocabulary. A divisor of V in [vocab_chunk/2, vocab_chunk] is preferred so
        the head is not padded (copied).
      vocab_mask_V: optional bool ``[V]``; False entries are excluded from the distribution
        (padded vocabulary rows of the head).
      temperature: sampling temperature (a Python float: it is static in the custom VJP).
      full: one ``[B, T, V]`` fp32 block of logits kept for the backward pass instead of
        T-chunks recomputed (:func:`choose_head` picks it when that fits a memory budget); the
        same numbers either way. ``chunk`` / ``vocab_chunk`` are then unused.

    Returns:
      ``(logp_BT, entropy_BT)`` fp32. Gradients flow to ``hidden_BTD`` and ``lm_head``.
    """
    B, T, D = hidden_BTD.shape
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    if vocab_chunk and callable(lm_head):
        raise ValueError("vocab_chunk needs the [D, V] head weight, not a callable")
    targets_BT = targets_BT.astype(jnp.int32)
    if full and not callable(lm_head):
        V = lm_head.shape[1]
        live_V = jnp.ones((V,), bool) if vocab_mask_V is None else vocab_mask_V.astype(bool)
        return _full_logp_entropy(hidden_BTD, lm_head, targets_BT, live_V, float(temperature))
    chunk = T if full else balanced_chunk(T, chunk)
    n_t = -(-T // chunk)
    pad = n_t * chunk - T
    if pad:
        hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
        targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
    if callable(lm_head):
        logp_BT, ent_BT = _callable_head(hidden_BTD, lm_head, targets_BT, chunk, vocab_mask_V,
                                         temperature, remat=not full)
        return logp_BT[:, :T], ent_BT[:, :T]
    V = lm_head.shape[1]
    vc = _pick_vocab_chunk(V, vocab_chunk)
    live_V = jnp.ones((V,), bool) if vocab_mask_V is None else vocab_mask_V.astype(bool)
    w_DV = lm_head
    v_pad = -(-V // vc) * vc - V
    if v_pad:  # padded columns are dead, so they change nothing (costs one copy of the head)
        w_DV = jnp.pad(w_DV, ((0, 0), (0, v_pad)))
        live_V = jnp.pad(live_V, (0, v_pad))
    logp_BT, ent_BT = _head_logp_entropy(hidden_BTD, w_DV, targets_BT, live_V, chunk, vc,
                                         float(temperature))
    return logp_BT[:, :T], ent_BT[:, :T]


def _callable_head(h_BTD, head, tgt_BT, chunk, vocab_mask_V, temperature, remat=True):
    """Generic path for a callable head: T-chunks under ``jax.checkpoint`` + plain autodiff, so
    the backward recomputes one chunk's logits instead of storing all of them (``remat=False``,
    the full path: one chunk, logits kept)."""

    def one_chunk(h_BcD, tgt_Bc):
        z = _head_logits(h_BcD, head, temperature)
        if vocab_mask_V is not None:
            z = jnp.where(vocab_mask_V.astype(bool), z, -jnp.inf)
        return _logp_entropy_block(z, tgt_Bc)

    if remat:
        one_chunk = jax.checkpoint(one_chunk)
    _, (lp, ent) = jax.lax.scan(lambda _, xs: (None, one_chunk(*xs)), None,
                                (_to_chunks(h_BTD, chunk), _to_chunks(tgt_BT, chunk)))
    return _from_chunks(lp), _from_chunks(ent)


def hidden_to_logp(
    hidden_BTD: Array,
    lm_head: LMHead,
    targets_BT: Array,
    *,
    chunk: int,
    vocab_chunk: int = 0,
    vocab_mask_V: Array | None = None,
    temperature: float = 1.0,
    full: bool = False,
) -> Array:
    """fp32 ``logp_BT`` of ``targets_BT`` only — no entropy, no gradient: for the frozen
    reference policy (KL) and recomputed old log-probs, which need nothing else. The same
    numbers as :func:`hidden_to_logp_entropy`'s first output; arguments as there."""
    B, T, _ = hidden_BTD.shape
    targets_BT = targets_BT.astype(jnp.int32)
    hidden_BTD = jax.lax.stop_gradient(hidden_BTD)
    if callable(lm_head) or full:
        # One logits block (full) or T-chunks of the callable head; the entropy is unused, so
        # XLA drops its reduction.
        return hidden_to_logp_entropy(hidden_BTD, lm_head, targets_BT, chunk=chunk,
                                      vocab_chunk=vocab_chunk, vocab_mask_V=vocab_mask_V,
                                      temperature=temperature, full=full)[0]
    chunk = balanced_chunk(T, chunk)
    n_t = -(-T // chunk)
    pad = n_t * chunk - T
    if pad:
        hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
        targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
    V = lm_head.shape[1]
    vc = _pick_vocab_chunk(V, vocab_chunk)
    live_V = jnp.ones((V,), bool) if vocab_mask_V is None else vocab_mask_V.astype(bool)
    w_DV = jax.lax.stop_gradient(lm_head)
    v_pad = -(-V // vc) * vc - V
    if v_pad:
        w_DV = jnp.pad(w_DV, ((0, 0), (0, v_pad)))
        live_V = jnp.pad(live_V, (0, v_pad))

    def body(_, xs):
        lp, _, _ = _online_forward(xs[0], w_DV, xs[1], live_V, vc, float(temperature),
                                   entropy=False)
        return None, lp

    _, lp = jax.lax.scan(body, None, (_to_chunks(hidden_BTD, chunk), _to_chunks(targets_BT, chunk)))
    return _from_chunks(lp)[:, :T]
