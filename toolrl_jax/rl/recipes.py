"""Named RL recipes as bundles of pure functions, built once from the config.

A :class:`Recipe` is chosen by ``rl.recipe`` (a preset) with any component overridden in the
config (``rl.reward``, ``rl.filters``, ``rl.advantage``, ``rl.shaping``, ``rl.loss_agg``, …), so
e.g. TAO-RL's filters combine with TEPO's rewards. :func:`make_recipe` looks every component name
up once in :mod:`toolrl_jax.rl.registry` and binds the functions; the train step calls the same
fields for every recipe and nothing branches on a recipe or component name::

    recipe = make_recipe(cfg.rl, group_size=cfg.rollout.group_size,
                         max_new_tokens=cfg.rollout.max_new_tokens)
    beta_long = recipe.init_beta_long

    # --- host, per step (NumPy) ---
    rule = recipe.refill_rule(cfg.rollout.prompts_per_step)
    ... sample rule.prompts_to_request(kept, round) prompts per round until it returns 0 ...
    d = {k: np.asarray(v) for k, v in call_entropy_deltas(                 # sampler entropy
            entropy_BT, segment_ids_BT, num_calls_B, cfg.rollout.max_tool_calls).items()}
    inputs = RewardInputs(score_B=verifier_scores, correct_B=..., format_ok_B=..., length_B=...,
                          short_mode_B=..., num_calls_B=..., delta_entropy_BK=d["delta_BK"],
                          delta_valid_BK=d["valid_BK"], call_status_BK=..., void_turn_B=...)
    rewards = recipe.compute_rewards(inputs)
    filt = recipe.filter(rewards, inputs)            # row weights + counts (+ group_keep_P)
    idx, gw = refill(group_keep_P_of_pool, P)        # when rule.active; gather rows, w *= gw
    # --- jnp (jit-able), on the whole batch ---
    adv_BT, loss_mask_BT, adv_metrics = recipe.advantages(
        rewards.reward_B, loss_mask_BT, row_weight_B=filt.row_weight_B, entropy_BT=entropy_BT,
        post_tool_mask_BT=..., segment_ids_BT=..., call_reward_BK=rewards.call_reward_BK,
        num_calls_B=...)
    # --- inside the jitted step, per micro-batch ---
    logp_BT, ent_BT = hidden_to_logp_entropy(hidden_BTD, w_DV, targets_BT,
                                             chunk=cfg.train.logit_chunk,
                                             vocab_chunk=cfg.rl.vocab_chunk)
    loss_sum, denom, metrics = recipe.loss(logp_BT, ent_BT, batch.old_logp_BT, adv_BT,
                                           loss_mask_BT, ref_logp_BT=batch.ref_logp_BT,
                                           short_mode_B=batch.mode_B, beta_long=beta_long)
    # objective = Σ_mb loss_sum / Σ_mb denom  (denom has no gradient: accumulate grads of
    # loss_sum, divide once); every metric is a (sum, count) pair combined the same way.
    beta_long = recipe.update_beta(beta_long, combined_metrics)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from toolrl_jax.config.rl import RLConfig
from toolrl_jax.rl import filters as filt_lib
from toolrl_jax.rl import losses, rewards, shaping
from toolrl_jax.rl.registry import (
    ADVANTAGES,
    AUTOTOOL_GATES,
    FILTERS,
    KL_ESTIMATORS,
    LOSS_AGGS,
    REWARDS,
    SHAPERS,
    AdvantageFn,
    Filter,
    RewardFn,
    ShaperFn,
)
from toolrl_jax.rl.rewards import RewardInputs, Rewards

__all__ = ["Recipe", "RewardInputs", "Rewards", "make_recipe"]


def _compute_rewards(cfg: RLConfig, max_new_tokens: int, reward_fn: RewardFn,
                     x: RewardInputs) -> Rewards:
    """The chosen reward's ``base_B`` (+ per-call rewards), plus the format and overlong terms."""
    base, call_reward = reward_fn(cfg, x)
    parts = {"reward/base": base}
    total = base.astype(np.float32)
    if cfg.format_weight:
        parts["reward/format"] = rewards.format_reward(x.need("format_ok_B", "format_weight"),
                                                       cfg.format_weight)
        total = total + parts["reward/format"]
    if cfg.overlong_buffer_ratio:
        buffer = int(round(cfg.overlong_buffer_ratio * max_new_tokens))
        parts["reward/overlong"] = rewards.overlong_penalty(
            x.need("length_B", "overlong shaping"), max_new_tokens, buffer)
        total = total + parts["reward/overlong"]
    return Rewards(total.astype(np.float32), call_reward, parts)


def _filter(chosen: Sequence[tuple[str, Filter]], group_size: int, r: Rewards,
            x: RewardInputs) -> filt_lib.FilterResult:
    return filt_lib.run_filters(chosen, r.reward_B, x, group_size)


def _micro_batch_groups(rows: int, micro_batch_B):
    if micro_batch_B is None:
        raise ValueError("rl.shaping_scope='micro_batch' needs micro_batch_B (each row's update "
                         "micro-batch), which the trainer passes to recipe.advantages")
    return jnp.asarray(micro_batch_B, jnp.int32)


#: ``rl.shaping_scope`` -> ``(rows, micro_batch_B) -> stat_group_B | None``: one population (the
#: batch), the update micro-batch each row lands in (only the trainer knows it:
#: ``rl_loop.RLTrainer.micro_batch_ids``), or the row itself.
STAT_GROUPS = {
    "batch": lambda rows, micro_batch_B: None,
    "micro_batch": _micro_batch_groups,
    "trajectory": lambda rows, micro_batch_B: jnp.arange(rows, dtype=jnp.int32),
}
#: ``rl.refill`` -> whether missing groups are filled by repeating survivors.
REFILL_DUPLICATES = {"pad": False, "duplicate": True}


def _advantages(cfg: RLConfig, group_size: int, adv_fn: AdvantageFn, shape_fn: ShaperFn,
                reward_B, loss_mask_BT, *, row_weight_B=None, entropy_BT=None,
                post_tool_mask_BT=None, segment_ids_BT=None, call_reward_BK=None,
                num_calls_B=None, micro_batch_B=None):
    """Token advantages ``[B, T]``, the final training loss mask ``[B, T]`` and advantage metrics
    ((sum, count) pairs over the final mask); see the module docstring. ``micro_batch_B``: the
    update micro-batch of each row (int ``[B]``), needed by ``rl.shaping_scope='micro_batch'``."""
    mask = jnp.asarray(loss_mask_BT, jnp.float32)
    adv = adv_fn(cfg, reward_B, mask, group_size=group_size, call_reward_BK=call_reward_BK,
                 num_calls_B=num_calls_B, segment_ids_BT=segment_ids_BT)
    if row_weight_B is not None:  # dropped rows: zero gradient, but they shaped the baseline
        mask = mask * jnp.asarray(row_weight_B, jnp.float32)[:, None]
    groups = STAT_GROUPS[cfg.shaping_scope](mask.shape[0], micro_batch_B)
    # Passed only when there are groups, so a shaper written for the plain five-argument
    # signature keeps working at the default (batch) scope.
    extra = {} if groups is None else {"stat_group_B": groups}
    adv = shape_fn(adv, entropy_BT, post_tool_mask_BT, mask, cfg, **extra)
    if cfg.top_entropy_ratio < 1.0:
        if entropy_BT is None:
            raise ValueError("top_entropy_ratio < 1 needs entropy_BT")
        mask = shaping.top_entropy_mask(entropy_BT, mask, cfg.top_entropy_ratio)
    valid = mask > 0
    pair = losses.mean_pair
    metrics = {"adv/mean": pair(adv, valid), "adv/abs": pair(jnp.abs(adv), valid),
               "adv/positive_frac": pair((adv > 0).astype(jnp.float32), valid)}
    return adv, mask, metrics


def _update_beta(cfg: RLConfig, beta_long, metrics):
    return losses.update_beta_long(beta_long, metrics["autotool/beta_long_grad"],
                                   lr=cfg.autotool_beta_lr, beta_max=cfg.autotool_beta_max)


def _keep_beta(beta_long, metrics):
    return beta_long


def rollout_rows(recipe: Recipe, prompts_per_step: int, group_size: int) -> int:
    """Rows of the largest rollout call in one RL step: the first round's prompts (an
    oversampling recipe draws ``ceil(P × factor)``; later rounds ask for fewer) × G. The engine
    is sized for it, so no row of an oversampled round waits for a slot."""
    return recipe.refill_rule(prompts_per_step).prompts_to_request(0, 0) * group_size


def _refill_rule(cfg: RLConfig, active: bool, target_groups: int) -> filt_lib.RefillRule:
    return filt_lib.RefillRule(target_groups, cfg.oversample_factor, cfg.max_sample_rounds,
                               active, duplicate=REFILL_DUPLICATES[cfg.refill])


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One recipe: every field is a function (or constant) with the config and the looked-up
    components already bound.

    compute_rewards(RewardInputs) -> Rewards                                    host, NumPy
    filter(Rewards, RewardInputs) -> FilterResult                               host, NumPy
    refill_rule(target_groups) -> RefillRule                                     host
    advantages(reward_B, loss_mask_BT, *, row_weight_B, entropy_BT, post_tool_mask_BT,
               segment_ids_BT, call_reward_BK, num_calls_B, micro_batch_B)
        -> (advantages_BT, loss_mask_BT, metrics)                                jnp, jit-able
    loss(logp_BT, entropy_BT, old_logp_BT, advantages_BT, loss_mask_BT, *, ref_logp_BT=None,
         short_mode_B=None, beta_long=None) -> (loss_sum, denom, metrics)        inside jit
    update_beta(beta_long, metrics) -> beta_long                                 jnp (identity
                                                                                 unless AutoTool)
    """

    name: str
    config: RLConfig  # resolved
    compute_rewards: Callable[[RewardInputs], Rewards]
    filter: Callable[[Rewards, RewardInputs], filt_lib.FilterResult]
    refill_rule: Callable[[int], filt_lib.RefillRule]
    advantages: Callable[..., tuple]
    loss: Callable[..., tuple]
    update_beta: Callable[[Any, dict], Any]
    init_beta_long: float
    needs_reference: bool  # kl_coef > 0: the step must supply ref_logp_BT


def make_recipe(rl_cfg: RLConfig, *, group_size: int, max_new_tokens: int) -> Recipe:
    """Builds the recipe named by ``rl_cfg.recipe`` with overrides applied (config validated).

    Every component name is looked up here, once; the returned functions only call what was
    bound.
    """
    rl_cfg.validate("rl")
    cfg = rl_cfg.resolved()
    reward_fn = REWARDS[cfg.reward]
    chosen_filters = tuple((name, FILTERS[name]) for name in cfg.filters)
    adv_fn = ADVANTAGES[cfg.advantage]
    shape_fn = SHAPERS[cfg.shaping]
    constant = float(cfg.loss_constant or max_new_tokens)
    autotool = (dict(beta_short=cfg.autotool_beta_short, target_short=cfg.autotool_target_short,
                     target_long=cfg.autotool_target_long,
                     gate=AUTOTOOL_GATES[cfg.autotool_entropy_gate])
                if cfg.autotool_entropy else None)
    loss_kw = dict(agg=LOSS_AGGS[cfg.loss_agg], eps_low=cfg.clip_eps_low,
                   eps_high=cfg.clip_eps_high, dual_clip=cfg.dual_clip, agg_constant=constant,
                   kl_coef=cfg.kl_coef, kl_estimator=KL_ESTIMATORS[cfg.kl_estimator],
                   kl_clamp=cfg.kl_clamp, entropy_coef=cfg.entropy_coef, autotool=autotool)

    def loss(logp_BT, entropy_BT, old_logp_BT, advantages_BT, loss_mask_BT, *, ref_logp_BT=None,
             short_mode_B=None, beta_long=None):
        return losses.rl_loss(logp_BT, entropy_BT, old_logp_BT, advantages_BT, loss_mask_BT,
                              ref_logp_BT=ref_logp_BT, short_mode_B=short_mode_B,
                              beta_long=beta_long, **loss_kw)

    return Recipe(
        name=cfg.recipe,
        config=cfg,
        compute_rewards=functools.partial(_compute_rewards, cfg, max_new_tokens, reward_fn),
        filter=functools.partial(_filter, chosen_filters, group_size),
        refill_rule=functools.partial(_refill_rule, cfg,
                                      any(f.drops_groups for _, f in chosen_filters)),
        advantages=functools.partial(_advantages, cfg, group_size, adv_fn, shape_fn),
        loss=loss,
        update_beta=(functools.partial(_update_beta, cfg) if cfg.autotool_entropy
                     else _keep_beta),
        init_beta_long=cfg.autotool_beta_long_init,
        needs_reference=cfg.kl_coef > 0,
    )
