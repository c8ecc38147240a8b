"""Group-relative advantages: GRPO, Dr.GRPO, RLOO, and TEPO's tool-level attribution.

**Group layout.** Rows are grouped ``G = group_size`` *consecutive* rows per prompt (``B = P*G``;
row ``b`` belongs to group ``b // G``). A static G keeps every function a reshape + reduction that
jits once, and it is what the rollout engine emits. Filters never reorder or remove rows (they
only zero weights), so the layout survives filtering; DAPO refills select whole groups.

All functions are pure ``jnp``, take rewards as data (no gradient flows into them) and return fp32.
Per-row advantages are ``[B]``; :func:`broadcast_to_tokens` puts them on the loss tokens.

``rl.advantage`` names one entry of :data:`toolrl_jax.rl.registry.ADVANTAGES` (registered at the
end of this module): ``(cfg, reward_B, mask_BT, *, group_size, call_reward_BK, num_calls_B,
segment_ids_BT) -> adv_BT``, token advantages that are 0 off the mask (``mask_BT`` > 0 on loss
tokens); optional inputs are None when absent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolrl_jax.rl.registry import ADVANTAGES

Array = jax.Array


def _groups(x_B: Array, group_size: int) -> Array:
    x = jnp.asarray(x_B, jnp.float32)
    if x.shape[0] % group_size:
        raise ValueError(f"batch {x.shape[0]} is not a multiple of group_size={group_size}")
    return x.reshape(-1, group_size)


def _std(x_PG: Array, mean_P1: Array, n: Array | int, ddof: int) -> Array:
    """Std with ``ddof``; 0 where fewer than ``ddof + 1`` values (one sample has no spread)."""
    dof = n - ddof
    var = jnp.sum((x_PG - mean_P1) ** 2, axis=-1) / jnp.maximum(dof, 1)
    return jnp.where(dof > 0, jnp.sqrt(var), 0.0)


def grpo_advantages(reward_B: Array, group_size: int, *, eps: float = 1e-6,
                    ddof: int = 1) -> Array:
    """``(R - mean_g) / (std_g + eps)`` per row; ``ddof=1`` is torch.std's (unbiased) default.

    A zero-variance group gives exactly 0 (numerator 0), never ``0/0``.
    """
    r = _groups(reward_B, group_size)
    mean = jnp.mean(r, axis=-1, keepdims=True)
    std = _std(r, mean, group_size, ddof)[:, None]
    return ((r - mean) / (std + eps)).reshape(-1)


def dr_grpo_advantages(reward_B: Array, group_size: int) -> Array:
    """Dr.GRPO: ``R - mean_g`` (no std division: it up-weights near-uniform groups)."""
    r = _groups(reward_B, group_size)
    return (r - jnp.mean(r, axis=-1, keepdims=True)).reshape(-1)


def rloo_advantages(reward_B: Array, group_size: int) -> Array:
    """RLOO: ``R_i - mean_{j != i} R_j = G/(G-1) * (R_i - mean_g)``; 0 when G = 1."""
    r = _groups(reward_B, group_size)
    if group_size == 1:
        return jnp.zeros_like(r).reshape(-1)
    loo = (jnp.sum(r, axis=-1, keepdims=True) - r) / (group_size - 1)
    return (r - loo).reshape(-1)


def broadcast_to_tokens(adv_B: Array, loss_mask_BT: Array) -> Array:
    """``[B] -> [B, T]``: the row's advantage on its loss tokens, 0 elsewhere."""
    return jnp.where(jnp.asarray(loss_mask_BT) > 0, jnp.asarray(adv_B, jnp.float32)[:, None], 0.0)


def tepo_tool_advantages(
    outcome_reward_B: Array,
    call_reward_BK: Array,
    num_calls_B: Array,
    segment_ids_BT: Array,
    group_size: int,
    *,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:
    """TEPO-dense token advantages from per-call rewards.

    * Per-call rewards of the real calls (slot k < n) of all G rows of a group are pooled and
      normalised together: ``A_k = (r_k - mean_g) / (std_g + eps)``. Pooling (not per slot index)
      because slot k of two rollouts are unrelated calls; "normalised in the group" is over calls.
    * ``A_k`` goes on the tokens of segment k, the reasoning segment that ends in call k.
    * The answer segment (segment n) gets the outcome advantage, GRPO-normalised in the group.
    * Non-model tokens (segment -1) get 0. A group with < ddof+1 calls has std 0, so A_k = 0.

    Returns ``[B, T]`` fp32 (apply the loss mask downstream).
    """
    B, K = jnp.shape(call_reward_BK)
    n_B = jnp.asarray(num_calls_B, jnp.int32)
    exists_BK = jnp.arange(K)[None, :] < n_B[:, None]
    r_PN = _groups(call_reward_BK, group_size).reshape(-1, group_size * K)  # [P, G*K]
    v_PN = exists_BK.reshape(-1, group_size * K)
    cnt_P1 = jnp.sum(v_PN, axis=-1, keepdims=True).astype(jnp.float32)
    mean_P1 = jnp.sum(jnp.where(v_PN, r_PN, 0.0), -1, keepdims=True) / jnp.maximum(cnt_P1, 1.0)
    dev_PN = jnp.where(v_PN, r_PN - mean_P1, 0.0)
    std_P = _std(dev_PN, 0.0, cnt_P1[:, 0], ddof)
    a_call_BK = jnp.where(v_PN, dev_PN / (std_P[:, None] + eps), 0.0).reshape(B, K)

    a_out_B = grpo_advantages(outcome_reward_B, group_size, eps=eps, ddof=ddof)
    seg = jnp.asarray(segment_ids_BT, jnp.int32)
    a_seg_BT = jnp.take_along_axis(a_call_BK, jnp.clip(seg, 0, K - 1), axis=1) if K else 0.0
    on_call = (seg >= 0) & (seg < n_B[:, None])
    on_answer = seg == n_B[:, None]
    return jnp.where(on_call, a_seg_BT, jnp.where(on_answer, a_out_B[:, None], 0.0))


# --- registered advantage entries: (cfg, reward_B, mask_BT, *, group_size, ...) -> adv_BT ------


@ADVANTAGES.register("grpo")
def _grpo(cfg, reward_B, mask_BT, *, group_size, call_reward_BK=None, num_calls_B=None,
          segment_ids_BT=None) -> Array:
    """:func:`grpo_advantages` (``rl.adv_eps``, ``rl.adv_std_ddof``) on the row's loss tokens."""
    a_B = grpo_advantages(reward_B, group_size, eps=cfg.adv_eps, ddof=cfg.adv_std_ddof)
    return broadcast_to_tokens(a_B, mask_BT)


@ADVANTAGES.register("dr_grpo")
def _dr_grpo(cfg, reward_B, mask_BT, *, group_size, call_reward_BK=None, num_calls_B=None,
             segment_ids_BT=None) -> Array:
    """:func:`dr_grpo_advantages` on the row's loss tokens."""
    return broadcast_to_tokens(dr_grpo_advantages(reward_B, group_size), mask_BT)


@ADVANTAGES.register("rloo")
def _rloo(cfg, reward_B, mask_BT, *, group_size, call_reward_BK=None, num_calls_B=None,
          segment_ids_BT=None) -> Array:
    """:func:`rloo_advantages` on the row's loss tokens."""
    return broadcast_to_tokens(rloo_advantages(reward_B, group_size), mask_BT)


@ADVANTAGES.register("tepo_tool")
def _tepo_tool(cfg, reward_B, mask_BT, *, group_size, call_reward_BK=None, num_calls_B=None,
               segment_ids_BT=None) -> Array:
    """:func:`tepo_tool_advantages` from the per-call rewards (reward ``tepo_dense``), masked."""
    if call_reward_BK is None or num_calls_B is None or segment_ids_BT is None:
        raise ValueError("tepo_tool advantages need call_reward_BK, num_calls_B and "
                         "segment_ids_BT")
    adv = tepo_tool_advantages(reward_B, call_reward_BK, num_calls_B, segment_ids_BT, group_size,
                               eps=cfg.adv_eps, ddof=cfg.adv_std_ddof)
    return jnp.where(jnp.asarray(mask_BT) > 0, adv, 0.0)
