"""Entropy-based advantage shaping and the forking-token loss mask.

All entropies are ``stop_gradient``-ed on entry: shaping only re-weights advantages (data), it must
never open a gradient path into the policy's entropy. Inputs are ``[B, T]``; ``valid_BT`` (the
loss mask, > 0 on trained tokens) defines the token population for batch statistics. Call these on
the *whole* batch before splitting into micro-batches so the statistics do not depend on the split.

``rl.shaping`` names one entry of :data:`toolrl_jax.rl.registry.SHAPERS` (registered at the end of
this module): ``(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg, stat_group_B=None) ->
adv_BT``; an entry that needs a missing (None) input raises. ``stat_group_B`` (int ``[B]``, values
in ``[0, B)``) splits the rows into the populations whose own mean / std a batch statistic uses
(``rl.shaping_scope``: one group = the batch, row i's micro-batch, or row i alone); None = one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolrl_jax.rl.registry import SHAPERS

Array = jax.Array


def masked_zscore(x_BT: Array, valid_BT: Array, eps: float = 1e-6,
                  group_B: Array | None = None) -> Array:
    """``(x - mean) / (std + eps)`` over the valid tokens (population std, ddof = 0).

    ``group_B`` (int ``[B]``, values in ``[0, B)``): mean and std are taken separately over the
    valid tokens of each group of rows (a micro-batch, or one row); None = the whole batch.
    Returns 0 on invalid tokens; a group with no valid token gets all 0.
    """
    valid = jnp.asarray(valid_BT) > 0
    x = jnp.where(valid, jnp.asarray(x_BT, jnp.float32), 0.0)
    if group_B is None:
        n = jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)
        mean = jnp.sum(x) / n
        std = jnp.sqrt(jnp.sum(jnp.where(valid, (x - mean) ** 2, 0.0)) / n)
        return jnp.where(valid, (x - mean) / (std + eps), 0.0)
    group = jnp.asarray(group_B, jnp.int32)
    rows = x.shape[0]

    def per_row(v_B):  # sum of v over each row's group, broadcast back to the row: [B, 1]
        return jax.ops.segment_sum(v_B, group, num_segments=rows)[group][:, None]

    n = jnp.maximum(per_row(jnp.sum(valid.astype(jnp.float32), axis=-1)), 1.0)
    mean = per_row(jnp.sum(x, axis=-1)) / n
    var = per_row(jnp.sum(jnp.where(valid, (x - mean) ** 2, 0.0), axis=-1)) / n
    return jnp.where(valid, (x - mean) / (jnp.sqrt(var) + eps), 0.0)


def tao_post_tool_shaping(
    adv_BT: Array,
    entropy_BT: Array,
    post_tool_mask_BT: Array,
    valid_BT: Array,
    coef: float,
    eps: float = 1e-6,
    group_B: Array | None = None,
) -> Array:
    """TAO-RL: ``Â_t · (1 + a · g_t · z(sg(H_t)))`` with ``g_t`` = post-tool mask.

    ``z`` is the z-score of the token entropy over valid tokens of the batch, or of each row group
    (``group_B``: the shaping scope, see :func:`masked_zscore`). Tokens with ``g_t = 0`` keep
    ``Â_t`` bit-exactly (a ``where``, not a multiply by 1), so ``a = 0`` or an empty post-tool mask
    is GRPO exactly. The sign of ``Â_t`` is kept whenever ``|a·z| < 1``.
    """
    z = masked_zscore(jax.lax.stop_gradient(entropy_BT), valid_BT, eps, group_B)
    g = (jnp.asarray(post_tool_mask_BT) > 0) & (jnp.asarray(valid_BT) > 0)
    adv = jnp.asarray(adv_BT, jnp.float32)
    return jnp.where(g, adv * (1.0 + coef * z), adv)


def entropy_advantage_bonus(
    adv_BT: Array, entropy_BT: Array, valid_BT: Array, alpha: float, kappa: float
) -> Array:
    """Exploration bonus ``A + min(α · sg(H), |A| / κ)`` on valid tokens (Cheng et al., 2025).

    The bonus is >= 0 and at most ``|A|/κ``; with κ > 1 it can never flip a negative A
    (``A + |A|/κ = A(1 - 1/κ) < 0``), and it is 0 when A = 0.
    """
    h = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
    adv = jnp.asarray(adv_BT, jnp.float32)
    bonus = jnp.minimum(alpha * jnp.maximum(h, 0.0), jnp.abs(adv) / kappa)
    return jnp.where(jnp.asarray(valid_BT) > 0, adv + bonus, adv)


def top_entropy_mask(entropy_BT: Array, loss_mask_BT: Array, ratio: float) -> Array:
    """Keep only the top-``ratio`` highest-entropy ("forking") valid tokens of the batch.

    Threshold = the ``ceil(ratio · n_valid)``-th largest valid entropy; ties at the threshold are
    all kept (so slightly more than the fraction may survive). Returns ``loss_mask_BT`` with the
    other tokens zeroed (weights of kept tokens unchanged). ``ratio >= 1`` returns it unchanged.
    """
    mask = jnp.asarray(loss_mask_BT)
    if ratio >= 1.0:
        return mask
    valid = mask > 0
    h = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
    flat = jnp.where(valid, h, -jnp.inf).reshape(-1)
    desc = -jnp.sort(-flat)
    n = jnp.sum(valid)
    k = jnp.clip(jnp.ceil(ratio * n).astype(jnp.int32), 1, flat.shape[0])
    thr = desc[k - 1]
    return jnp.where(valid & (h >= thr), mask, jnp.zeros_like(mask))


# --- registered shapers: (adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg, stat_group_B)
# -> adv_BT ---------------------------------------------------------------------------------------


def _need(value, what: str, name: str):
    if value is None:
        raise ValueError(f"shaping {name!r} needs {what}")
    return value


@SHAPERS.register("none")
def _no_shaping(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg, stat_group_B=None) -> Array:
    """The advantages unchanged."""
    return adv_BT


@SHAPERS.register("tao_post_tool")
def _tao_post_tool(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg,
                   stat_group_B=None) -> Array:
    """:func:`tao_post_tool_shaping` with ``a = rl.tao_coef``, z per ``stat_group_B``."""
    entropy_BT = _need(entropy_BT, "entropy_BT", "tao_post_tool")
    post_tool_mask_BT = _need(post_tool_mask_BT, "post_tool_mask_BT", "tao_post_tool")
    return tao_post_tool_shaping(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg.tao_coef,
                                 group_B=stat_group_B)


@SHAPERS.register("entropy_bonus")
def _entropy_bonus(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg,
                   stat_group_B=None) -> Array:
    """:func:`entropy_advantage_bonus` with ``rl.entropy_adv_alpha`` / ``rl.entropy_adv_kappa``."""
    entropy_BT = _need(entropy_BT, "entropy_BT", "entropy_bonus")
    return entropy_advantage_bonus(adv_BT, entropy_BT, mask_BT, cfg.entropy_adv_alpha,
                                   cfg.entropy_adv_kappa)
