"""Named RL recipes as bundles of pure functions, built once from the config.

A :class:`Recipe` is chosen by ``rl.recipe`` (a preset) with any component overridden in the
config (``rl.reward``, ``rl.filters``, ``rl.advantage``, ``rl.shaping``, ``rl.loss_agg``, …), so
e.g. TAO-RL's filters combine with TEPO's rewards. The train step calls the same fields for every
recipe and never branches on a recipe name::

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
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from toolrl_jax.config.rl import GROUP_FILTERS, RLConfig
from toolrl_jax.rl import advantages as adv_lib
from toolrl_jax.rl import filters as filt_lib
from toolrl_jax.rl import losses, rewards, shaping


@dataclasses.dataclass
class RewardInputs:
    """Host facts per trajectory (NumPy, ``[B]`` or ``[B, K]``). Only what the recipe uses is
    required; a missing one raises with its name.

    ``score_B``: verifier score in [0, 1] (0/1, or F1). ``correct_B``: defaults to
    ``score_B >= 1`` (full marks). ``delta_*``: from ``tool_entropy.call_entropy_deltas``.
    """

    score_B: Any
    correct_B: Any = None
    format_ok_B: Any = None
    length_B: Any = None  # generated tokens
    short_mode_B: Any = None  # AutoTool: 1 = short mode, 0 = long mode
    num_calls_B: Any = None
    delta_entropy_BK: Any = None
    delta_valid_BK: Any = None
    call_status_BK: Any = None
    void_turn_B: Any = None

    def correct(self) -> np.ndarray:
        if self.correct_B is not None:
            return np.asarray(self.correct_B, np.float32)
        return (np.asarray(self.score_B, np.float32) >= 1.0 - 1e-6).astype(np.float32)

    def need(self, name: str, why: str) -> np.ndarray:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"RewardInputs.{name} is required by {why}")
        return np.asarray(value)


@dataclasses.dataclass
class Rewards:
    """``reward_B``: the trajectory reward (group baseline, outcome advantage, logging).
    ``call_reward_BK``: per-call rewards (TEPO dense), else None. ``components``: parts, for logs.
    """

    reward_B: np.ndarray
    call_reward_BK: np.ndarray | None
    components: dict[str, np.ndarray]


def _compute_rewards(cfg: RLConfig, max_new_tokens: int, x: RewardInputs) -> Rewards:
    score = np.asarray(x.score_B, np.float32)
    call_reward = None
    kind = cfg.reward
    if kind == "outcome":
        base = score
    elif kind == "tepo_sparse":
        base = rewards.tepo_sparse_reward(
            score, x.need("delta_entropy_BK", kind), x.need("delta_valid_BK", kind),
            x.need("num_calls_B", kind), no_call_ratio=cfg.tepo_no_call_ratio)
    elif kind == "tepo_dense":
        base = score
        call_reward = rewards.tepo_dense_call_rewards(
            score, x.need("delta_entropy_BK", kind), x.need("delta_valid_BK", kind),
            x.need("num_calls_B", kind), alpha=cfg.tepo_alpha)
    elif kind == "autotool":
        base = rewards.autotool_reward(x.correct(), x.need("short_mode_B", kind),
                                       cfg.autotool_rewards)
    else:
        raise ValueError(f"unknown reward {kind!r}")
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


def _filter(cfg: RLConfig, group_size: int, r: Rewards, x: RewardInputs) -> filt_lib.FilterResult:
    return filt_lib.apply_filters(
        cfg.filters, group_size=group_size, reward_B=r.reward_B,
        correct_B=x.correct() if "all_correct_or_wrong" in cfg.filters else None,
        call_status_BK=x.call_status_BK, num_calls_B=x.num_calls_B, void_turn_B=x.void_turn_B)


def _pair(x_BT, valid_BT):
    return (jnp.sum(jnp.where(valid_BT, x_BT, 0.0)), jnp.sum(valid_BT.astype(jnp.float32)))


def _advantages(cfg: RLConfig, group_size: int, reward_B, loss_mask_BT, *, row_weight_B=None,
                entropy_BT=None, post_tool_mask_BT=None, segment_ids_BT=None,
                call_reward_BK=None, num_calls_B=None):
    """Token advantages and the final training loss mask; see the module docstring."""
    mask = jnp.asarray(loss_mask_BT, jnp.float32)
    kind = cfg.advantage
    if kind == "tepo_tool":
        if call_reward_BK is None or num_calls_B is None or segment_ids_BT is None:
            raise ValueError("tepo_tool advantages need call_reward_BK, num_calls_B and "
                             "segment_ids_BT")
        adv = adv_lib.tepo_tool_advantages(reward_B, call_reward_BK, num_calls_B, segment_ids_BT,
                                           group_size, eps=cfg.adv_eps, ddof=cfg.adv_std_ddof)
        adv = jnp.where(mask > 0, adv, 0.0)
    else:
        if kind == "grpo":
            a_B = adv_lib.grpo_advantages(reward_B, group_size, eps=cfg.adv_eps,
                                          ddof=cfg.adv_std_ddof)
        elif kind == "dr_grpo":
            a_B = adv_lib.dr_grpo_advantages(reward_B, group_size)
        elif kind == "rloo":
            a_B = adv_lib.rloo_advantages(reward_B, group_size)
        else:
            raise ValueError(f"unknown advantage {kind!r}")
        adv = adv_lib.broadcast_to_tokens(a_B, mask)
    if row_weight_B is not None:  # dropped rows: zero gradient, but they shaped the baseline
        mask = mask * jnp.asarray(row_weight_B, jnp.float32)[:, None]
    if cfg.shaping != "none" and entropy_BT is None:
        raise ValueError(f"shaping {cfg.shaping!r} needs entropy_BT")
    if cfg.shaping == "tao_post_tool":
        if post_tool_mask_BT is None:
            raise ValueError("tao_post_tool shaping needs post_tool_mask_BT")
        adv = shaping.tao_post_tool_shaping(adv, entropy_BT, post_tool_mask_BT, mask,
                                            cfg.tao_coef)
    elif cfg.shaping == "entropy_bonus":
        adv = shaping.entropy_advantage_bonus(adv, entropy_BT, mask, cfg.entropy_adv_alpha,
                                              cfg.entropy_adv_kappa)
    if cfg.top_entropy_ratio < 1.0:
        if entropy_BT is None:
            raise ValueError("top_entropy_ratio < 1 needs entropy_BT")
        mask = shaping.top_entropy_mask(entropy_BT, mask, cfg.top_entropy_ratio)
    valid = mask > 0
    metrics = {"adv/mean": _pair(adv, valid), "adv/abs": _pair(jnp.abs(adv), valid),
               "adv/positive_frac": _pair((adv > 0).astype(jnp.float32), valid)}
    return adv, mask, metrics


def _update_beta(cfg: RLConfig, beta_long, metrics):
    if not cfg.autotool_entropy:
        return beta_long
    return losses.update_beta_long(beta_long, metrics["autotool/beta_long_grad"],
                                   lr=cfg.autotool_beta_lr, beta_max=cfg.autotool_beta_max)


def _refill_rule(cfg: RLConfig, target_groups: int) -> filt_lib.RefillRule:
    active = any(f in GROUP_FILTERS for f in cfg.filters)
    return filt_lib.RefillRule(target_groups, cfg.oversample_factor, cfg.max_sample_rounds,
                               active)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One recipe: every field is a function (or constant) with the config already bound.

    compute_rewards(RewardInputs) -> Rewards                                    host, NumPy
    filter(Rewards, RewardInputs) -> FilterResult                               host, NumPy
    refill_rule(target_groups) -> RefillRule                                     host
    advantages(reward_B, loss_mask_BT, *, row_weight_B, entropy_BT, post_tool_mask_BT,
               segment_ids_BT, call_reward_BK, num_calls_B)
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
    needs_mode: bool  # AutoTool entropy term: the step must supply short_mode_B and beta_long


def make_recipe(rl_cfg: RLConfig, *, group_size: int, max_new_tokens: int) -> Recipe:
    """Builds the recipe named by ``rl_cfg.recipe`` with overrides applied (config validated)."""
    rl_cfg.validate("rl")
    cfg = rl_cfg.resolved()
    constant = float(cfg.loss_constant or max_new_tokens)
    autotool = (dict(beta_short=cfg.autotool_beta_short, target_short=cfg.autotool_target_short,
                     target_long=cfg.autotool_target_long, gate=cfg.autotool_entropy_gate)
                if cfg.autotool_entropy else None)
    loss_kw = dict(agg=cfg.loss_agg, eps_low=cfg.clip_eps_low, eps_high=cfg.clip_eps_high,
                   dual_clip=cfg.dual_clip, agg_constant=constant, kl_coef=cfg.kl_coef,
                   kl_estimator=cfg.kl_estimator, kl_clamp=cfg.kl_clamp,
                   entropy_coef=cfg.entropy_coef, autotool=autotool)

    def loss(logp_BT, entropy_BT, old_logp_BT, advantages_BT, loss_mask_BT, *, ref_logp_BT=None,
             short_mode_B=None, beta_long=None):
        return losses.rl_loss(logp_BT, entropy_BT, old_logp_BT, advantages_BT, loss_mask_BT,
                              ref_logp_BT=ref_logp_BT, short_mode_B=short_mode_B,
                              beta_long=beta_long, **loss_kw)

    return Recipe(
        name=cfg.recipe,
        config=cfg,
        compute_rewards=functools.partial(_compute_rewards, cfg, max_new_tokens),
        filter=functools.partial(_filter, cfg, group_size),
        refill_rule=functools.partial(_refill_rule, cfg),
        advantages=functools.partial(_advantages, cfg, group_size),
        loss=loss,
        update_beta=functools.partial(_update_beta, cfg),
        init_beta_long=cfg.autotool_beta_long_init,
        needs_reference=cfg.kl_coef > 0,
        needs_mode=bool(cfg.autotool_entropy),
    )
