"""Entropy at tool boundaries: segment entropy H(r_k), ΔH per call, and diagnostics.

Layout (types.py): segment k is the model text after tool result k; segment 0 precedes the first
call, and call k's own (sampled) text closes segment k. So for a row with n calls, calls are
slots ``k = 0..n-1`` of every ``[B, K]`` array, call k sits between segment k and segment k+1, and
segment n is the answer segment. Non-model tokens carry segment id -1.

    ΔH_k = H(r_{k+1}) - H(r_k)     for call slot k (0-based): entropy of the model's text after the
                                   tool result minus entropy of the text that led to the call.

(In DESIGN.md's 1-based notation ``ΔH_k = H(r_k) - H(r_{k-1})`` for the k-th call.)

Edge cases (pinned by tests/rl/test_tool_entropy.py):

* **No calls** (n = 0): every slot is padding; ``exists_BK`` and ``valid_BK`` are all False,
  ``delta_BK`` is 0. Rewards decide what n = 0 means (``tepo_no_call_ratio``).
* **Empty segment** on either side of call k (typically the call at the budget end: the rollout
  stopped right after the tool result, so segment k+1 has no model tokens): ΔH_k is undefined.
  The call still *exists* (counts in n) but is *not valid*: ``delta = 0``, ``valid = False``, and
  it is never counted as entropy-reducing — the model never acted on that result, so the call
  earns no entropy credit.
* Segment means use every model token of the segment (``segment_ids >= 0``), not ``loss_mask``:
  ΔH measures the sampling distribution, and a later loss mask (filters, top-ρ) must not move it.

Everything here is pure ``jnp``; host code may call it on NumPy arrays and ``np.asarray`` the
result. Entropies are stop-gradiented: these values only feed rewards, advantages and metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def segment_entropy(
    entropy_BT: Array, segment_ids_BT: Array, num_segments: int
) -> tuple[Array, Array]:
    """Mean token entropy per segment.

    Returns:
      ``(mean_BS, count_BS)``: ``S = num_segments``; ``mean`` is 0 where ``count`` is 0.
    """
    ent = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
    onehot_BTS = jax.nn.one_hot(jnp.asarray(segment_ids_BT), num_segments, dtype=jnp.float32)
    count_BS = jnp.sum(onehot_BTS, axis=1)  # one_hot(-1) is all zeros: non-model tokens drop out
    sum_BS = jnp.einsum("bt,bts->bs", ent, onehot_BTS)
    mean_BS = jnp.where(count_BS > 0, sum_BS / jnp.maximum(count_BS, 1.0), 0.0)
    return mean_BS, count_BS


def call_exists(num_calls_B: Array, max_calls: int) -> Array:
    """``[B, K]`` bool: slot k holds a real call (k < n)."""
    return jnp.arange(max_calls)[None, :] < jnp.asarray(num_calls_B)[:, None]


def call_entropy_deltas(
    entropy_BT: Array, segment_ids_BT: Array, num_calls_B: Array, max_calls: int
) -> dict[str, Array]:
    """ΔH for every call slot.

    Returns a dict with
      ``delta_BK``: ``H(seg k+1) - H(seg k)`` where valid, else 0;
      ``valid_BK``: the call exists and both neighbouring segments are non-empty;
      ``exists_BK``: the call exists (k < n);
      ``reduces_BK``: ``valid & delta < 0`` (entropy-reducing call);
      ``seg_mean_BS``, ``seg_count_BS``: segment entropies, ``S = K + 1``.
    """
    mean_BS, count_BS = segment_entropy(entropy_BT, segment_ids_BT, max_calls + 1)
    exists = call_exists(num_calls_B, max_calls)
    nonempty = count_BS > 0
    valid = exists & nonempty[:, :-1] & nonempty[:, 1:]
    delta = jnp.where(valid, mean_BS[:, 1:] - mean_BS[:, :-1], 0.0)
    return dict(delta_BK=delta, valid_BK=valid, exists_BK=exists, reduces_BK=valid & (delta < 0),
                seg_mean_BS=mean_BS, seg_count_BS=count_BS)


def call_mask_from_spans(call_spans_BK2: Array, seq_len: int) -> Array:
    """``[B, T]`` bool mask of tool-call tokens from ``[start, end)`` spans; ``-1`` rows = padding."""
    spans = jnp.asarray(call_spans_BK2)
    t = jnp.arange(seq_len)[None, None, :]
    inside = (t >= spans[..., 0:1]) & (t < spans[..., 1:2]) & (spans[..., 0:1] >= 0)
    return jnp.any(inside, axis=1)


def _pair(values_BT: Array, mask_BT: Array) -> tuple[Array, Array]:
    m = mask_BT.astype(jnp.float32)
    return jnp.sum(jnp.where(mask_BT, values_BT, 0.0)), jnp.sum(m)


def tool_entropy_diagnostics(
    entropy_BT: Array,
    segment_ids_BT: Array,
    post_tool_mask_BT: Array,
    num_calls_B: Array,
    max_calls: int,
    call_mask_BT: Array | None = None,
) -> tuple[dict[str, tuple[Array, Array]], dict[str, tuple[Array, Array]]]:
    """Mean entropy per token kind and ΔH statistics, as exactly-combinable (sum, count) pairs.

    Token kinds partition the model tokens (``segment_ids >= 0``): ``tool_call`` (inside a call
    span; only when ``call_mask_BT`` is given), ``post_tool`` (the turn after a tool result,
    call tokens excluded) and ``reasoning`` (the rest).

    Returns:
      ``(metrics, histograms)``: metrics maps name -> (sum, count); histograms maps name ->
      ``(values_N, valid_N)`` flat static-shape arrays, e.g. ΔH of every call slot.
    """
    ent = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
    model = jnp.asarray(segment_ids_BT) >= 0
    call = (jnp.zeros_like(model) if call_mask_BT is None
            else jnp.asarray(call_mask_BT).astype(bool) & model)
    post = jnp.asarray(post_tool_mask_BT).astype(bool) & model & ~call
    reasoning = model & ~post & ~call
    d = call_entropy_deltas(ent, segment_ids_BT, num_calls_B, max_calls)
    valid = d["valid_BK"]
    metrics = {
        "entropy/model": _pair(ent, model),
        "entropy/reasoning": _pair(ent, reasoning),
        "entropy/post_tool": _pair(ent, post),
        "tool/delta_entropy": _pair(d["delta_BK"], valid),
        "tool/entropy_reducing_frac": (jnp.sum(d["reduces_BK"].astype(jnp.float32)),
                                       jnp.sum(valid.astype(jnp.float32))),
        "tool/calls_without_delta": (jnp.sum((d["exists_BK"] & ~valid).astype(jnp.float32)),
                                     jnp.sum(d["exists_BK"].astype(jnp.float32))),
    }
    if call_mask_BT is not None:
        metrics["entropy/tool_call"] = _pair(ent, call)
    hists = {"tool/delta_entropy": (d["delta_BK"].reshape(-1), valid.reshape(-1))}
    return metrics, hists
