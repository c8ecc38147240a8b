"""Policy losses, regularisers and loss aggregation (pure ``jnp``, run inside the jitted step).

Per-token functions return unreduced ``[B, T]`` losses (0 off the mask). :func:`aggregate` turns a
per-token loss into a ``(sum, denominator)`` pair; the objective is ``sum / denominator``.
Denominators depend only on masks (never on parameters), so micro-batches and hosts combine
exactly: ``total = Σ sums / Σ denominators`` and ``grad = Σ grad(sum) / Σ denominators``. Rows are
never split across micro-batches, which keeps the per-row modes exact too.

Masks: ``mask_BT`` > 0 marks trained tokens; its value is the token's weight (1, or 0 for rows a
filter dropped). Off-mask values are selected away with ``where`` (never multiplied), so garbage
logprobs on padding (even ``-inf``) cannot turn into NaN losses or gradients.

Registered here (see :mod:`toolrl_jax.rl.registry`): loss aggregations ``LOSS_AGGS``
(``rl.loss_agg``: ``(loss_BT, mask_BT, constant) -> (sum, denom)``), KL estimators
``KL_ESTIMATORS`` (``rl.kl_estimator``: ``d_BT -> kl_BT``) and AutoTool entropy gates
``AUTOTOOL_GATES`` (``rl.autotool_entropy_gate``: ``(entropy_BT, h_B) -> gate entropy``). The
functions below take either a registered name or the looked-up entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toolrl_jax.rl.registry import (
    AUTOTOOL_GATES,
    KL_ESTIMATORS,
    LOSS_AGGS,
    AggFn,
    GateFn,
    KLFn,
)

Array = jax.Array
Pair = tuple[Array, Array]

_MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: far outside any clip range, still finite in fp32


def _valid(mask_BT: Array) -> Array:
    return jnp.asarray(mask_BT) > 0


def mean_pair(x_BT: Array, valid_BT: Array) -> Pair:
    """Token mean of ``x_BT`` over ``valid_BT`` (bool ``[B, T]``) as a ``(sum, count)`` pair, so
    micro-batches and hosts combine exactly (``Σ sums / Σ counts``)."""
    return (jnp.sum(jnp.where(valid_BT, x_BT, 0.0)),
            jnp.sum(valid_BT.astype(jnp.float32)))


def ppo_clip_loss(
    logp_BT: Array,
    old_logp_BT: Array,
    adv_BT: Array,
    mask_BT: Array,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float = 0.0,
) -> tuple[Array, dict[str, Pair]]:
    """PPO-clip with asymmetric range ``[1-eps_low, 1+eps_high]`` and optional dual-clip.

    ``ℓ_t = max(-A r, -A clip(r))``; with dual-clip ``c > 1``, for ``A < 0`` additionally
    ``ℓ_t = min(ℓ_t, -A c)`` (bounds the loss when r explodes on a negative-advantage token).

    Returns ``(loss_BT, metrics)``; metrics are token-mean (sum, count) pairs: clip fractions
    (low side, high side, dual), mean ratio, and approx KL to the sampler ``0.5 (log r)^2``.
    """
    valid = _valid(mask_BT)
    adv = jnp.asarray(adv_BT, jnp.float32)
    log_ratio = jnp.where(valid, logp_BT - jax.lax.stop_gradient(old_logp_BT), 0.0)
    ratio = jnp.exp(jnp.clip(log_ratio, -_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = jnp.maximum(unclipped, clipped)
    dual_hit = jnp.zeros_like(valid)
    if dual_clip:
        cap = -adv * dual_clip
        dual_hit = (adv < 0) & (loss > cap)
        loss = jnp.where(adv < 0, jnp.minimum(loss, cap), loss)
    loss = jnp.where(valid, loss, 0.0)
    f32 = lambda b: b.astype(jnp.float32)
    metrics = {
        "pg/clip_frac_high": mean_pair(f32((adv > 0) & (ratio > 1.0 + eps_high)), valid),
        "pg/clip_frac_low": mean_pair(f32((adv < 0) & (ratio < 1.0 - eps_low)), valid),
        "pg/dual_clip_frac": mean_pair(f32(dual_hit), valid),
        "pg/ratio": mean_pair(ratio, valid),
        "pg/approx_kl": mean_pair(0.5 * log_ratio**2, valid),
    }
    return loss, metrics


@KL_ESTIMATORS.register("k1")
def kl_k1(d_BT: Array) -> Array:
    """``k1 = -d``: unbiased, high variance, can be negative."""
    return -d_BT


@KL_ESTIMATORS.register("k2")
def kl_k2(d_BT: Array) -> Array:
    """``k2 = d² / 2``: biased, low variance, >= 0."""
    return 0.5 * d_BT**2


@KL_ESTIMATORS.register("k3")
def kl_k3(d_BT: Array) -> Array:
    """``k3 = e^d - 1 - d``: unbiased, low variance, >= 0 (Schulman's estimator, GRPO's)."""
    return jnp.exp(d_BT) - 1.0 - d_BT


def kl_penalty(
    logp_BT: Array, ref_logp_BT: Array, mask_BT: Array, *, estimator: str | KLFn = "k3",
    clamp: float = 10.0,
) -> Array:
    """Per-token KL(π || π_ref) estimate ``[B, T]`` from sampled tokens, 0 off the mask, with
    ``d = log π_ref - log π`` and ``estimator`` a ``KL_ESTIMATORS`` name (``k1``, ``k2``, ``k3``)
    or entry.

    Two guards, the same for every estimator: ``d`` is clipped to ±20 first, so ``e^d`` (k3) stays
    finite in fp32 and k1/k2 see the same input range; then each token's estimate is clipped to
    ``[-clamp, clamp]``, so a single token where π has drifted far from π_ref cannot dominate the
    batch's KL term. A clipped token contributes a constant (no gradient): a deliberate bias for
    stability, only on such outliers. Gradient flows through ``logp`` only.
    """
    kl_fn = KL_ESTIMATORS.resolve(estimator)
    valid = _valid(mask_BT)
    d = jnp.where(valid, jax.lax.stop_gradient(ref_logp_BT) - logp_BT, 0.0)
    d = jnp.clip(d, -_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return jnp.where(valid, jnp.clip(kl_fn(d), -clamp, clamp), 0.0)


def row_mean_entropy(entropy_BT: Array, mask_BT: Array) -> tuple[Array, Array]:
    """Stop-gradient mean token entropy per row over its loss tokens: ``(H_B, has_tokens_B)``."""
    valid = _valid(mask_BT)
    h = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
    n = jnp.sum(valid.astype(jnp.float32), axis=-1)
    s = jnp.sum(jnp.where(valid, h, 0.0), axis=-1)
    return jnp.where(n > 0, s / jnp.maximum(n, 1.0), 0.0), n > 0


def autotool_beta(
    entropy_BT: Array,
    mask_BT: Array,
    short_mode_B: Array,
    beta_long: Array | float,
    *,
    beta_short: float,
    target_short: float,
    target_long: float,
    gate: str | GateFn = "row_mean",
) -> tuple[Array, Array, Array]:
    """AutoTool's gated coefficient ``β_i = β_s m_i 1{H_i<=H_s} + β_l (1-m_i) 1{H_i<=H_l}``.

    ``entropy_BT`` ``[B, T]``, ``mask_BT`` the loss mask, ``short_mode_B`` ``[B]`` (1 short, 0
    long). ``gate`` (an ``AUTOTOOL_GATES`` name or entry) says which entropy is compared with the
    target: ``"row_mean"``: ``H_i``, the row's mean token entropy; ``"token"``: each token's own
    ``H_t``. Gate entropies are stop-gradient (a switch, not a path). The bonus only acts *below*
    the mode's target, pushing entropy up towards it.

    Returns ``(beta_BT, H_B, long_B)``: per-token coefficients (constant along T for
    ``row_mean``), row mean entropies, and long-mode rows that have loss tokens.
    """
    gate_fn = AUTOTOOL_GATES.resolve(gate)
    h_B, has_B = row_mean_entropy(entropy_BT, mask_BT)
    h_gate = gate_fn(entropy_BT, h_B)
    short = (jnp.asarray(short_mode_B) > 0.5)[:, None]
    b_l = jax.lax.stop_gradient(jnp.asarray(beta_long, jnp.float32))
    beta = jnp.where(short, beta_short * (h_gate <= target_short), b_l * (h_gate <= target_long))
    beta = jnp.broadcast_to(beta, jnp.shape(entropy_BT)).astype(jnp.float32)
    return beta, h_B, has_B & ~short[:, 0]


@AUTOTOOL_GATES.register("row_mean")
def gate_row_mean(entropy_BT: Array, h_B: Array) -> Array:
    """``[B, 1]``: the row's mean token entropy ``H_i`` (already stop-gradient), per sample as in
    the paper."""
    return h_B[:, None]


@AUTOTOOL_GATES.register("token")
def gate_token(entropy_BT: Array, h_B: Array) -> Array:
    """``[B, T]``: each token's own entropy ``H_t``, stop-gradient."""
    return jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))


def beta_long_grad_pair(h_B: Array, long_B: Array, target_long: float) -> Pair:
    """``dL_β/dβ_l`` for ``L_β = mean_long(β_l (H_i - H_l))`` as a (sum, count) pair."""
    return (jnp.sum(jnp.where(long_B, h_B - target_long, 0.0)),
            jnp.sum(long_B.astype(jnp.float32)))


def update_beta_long(beta_long: Array | float, grad_pair: Pair, *, lr: float,
                     beta_max: float) -> Array:
    """One SGD step on ``L_β``: ``β_l -= lr · mean_long(H_i - H_l)``, clamped to ``[0, max]``.

    Long-mode entropy below target (negative gradient) raises β_l; above target lowers it.
    No long-mode rows: unchanged.
    """
    s, n = grad_pair
    b = jnp.asarray(beta_long, jnp.float32)
    step = jnp.where(n > 0, lr * s / jnp.maximum(n, 1.0), 0.0)
    return jnp.clip(b - step, 0.0, beta_max)


def _weighted(loss_BT: Array, mask_BT: Array) -> tuple[Array, Array, Array, Array]:
    """``(w_BT, wl_BT, w_row_B, active)``: token weights (the mask, 0 off it), weighted losses,
    per-row weight sums and the number of rows with any weight."""
    valid = _valid(mask_BT)
    w = jnp.where(valid, jnp.asarray(mask_BT, jnp.float32), 0.0)
    wl = jnp.where(valid, loss_BT * w, 0.0)
    w_row = jnp.sum(w, axis=-1)
    return w, wl, w_row, jnp.sum((w_row > 0).astype(jnp.float32))


@LOSS_AGGS.register("token_mean")
def agg_token_mean(loss_BT: Array, mask_BT: Array, constant: float = 1.0) -> Pair:
    """``Σ w ℓ / Σ w`` (DAPO; long rows weigh more)."""
    w, wl, _, _ = _weighted(loss_BT, mask_BT)
    return jnp.sum(wl), jnp.sum(w)


@LOSS_AGGS.register("seq_mean_token_mean")
def agg_seq_mean_token_mean(loss_BT: Array, mask_BT: Array, constant: float = 1.0) -> Pair:
    """``Σ_rows (Σ_t w ℓ / Σ_t w) / #active`` (original GRPO)."""
    _, wl, w_row, active = _weighted(loss_BT, mask_BT)
    per_row = jnp.sum(wl, axis=-1) / jnp.maximum(w_row, 1e-12)
    return jnp.sum(jnp.where(w_row > 0, per_row, 0.0)), active


@LOSS_AGGS.register("seq_mean_token_sum")
def agg_seq_mean_token_sum(loss_BT: Array, mask_BT: Array, constant: float = 1.0) -> Pair:
    """``Σ w ℓ / #active``."""
    _, wl, _, active = _weighted(loss_BT, mask_BT)
    return jnp.sum(wl), active


@LOSS_AGGS.register("constant")
def agg_constant(loss_BT: Array, mask_BT: Array, constant: float = 1.0) -> Pair:
    """``Σ w ℓ / (#active · constant)`` (Dr.GRPO, constant = max generated length)."""
    _, wl, _, active = _weighted(loss_BT, mask_BT)
    return jnp.sum(wl), active * constant


def aggregate(loss_BT: Array, mask_BT: Array, mode: str | AggFn, constant: float = 1.0) -> Pair:
    """Reduce a per-token loss ``[B, T]`` to ``(sum, denominator)``; objective = sum / denominator.

    ``mode`` is a ``LOSS_AGGS`` name or entry. With token weights ``w`` (the mask, > 0 on trained
    tokens) and rows that have any weight ("active"):

    * ``token_mean``:           Σ w ℓ / Σ w                          (DAPO; long rows weigh more)
    * ``seq_mean_token_mean``:  Σ_rows (Σ_t w ℓ / Σ_t w) / #active   (original GRPO)
    * ``seq_mean_token_sum``:   Σ w ℓ / #active
    * ``constant``:             Σ w ℓ / (#active · constant)         (Dr.GRPO, constant = max len)
    """
    return LOSS_AGGS.resolve(mode)(loss_BT, mask_BT, constant)


def rl_loss(
    logp_BT: Array,
    entropy_BT: Array,
    old_logp_BT: Array,
    advantages_BT: Array,
    loss_mask_BT: Array,
    *,
    agg: str | AggFn,
    eps_low: float,
    eps_high: float,
    dual_clip: float = 0.0,
    agg_constant: float = 1.0,
    ref_logp_BT: Array | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str | KLFn = "k3",
    kl_clamp: float = 10.0,
    entropy_coef: float = 0.0,
    short_mode_B: Array | None = None,
    beta_long: Array | float | None = None,
    autotool: dict | None = None,
) -> tuple[Array, Array, dict[str, Pair]]:
    """The full per-token RL loss, aggregated once: ``(loss_sum, denom, metrics)``.

    ``ℓ_t = PPO_t + kl_coef·KL_t − entropy_coef·H_t − β_i·H_t`` (last term only when ``autotool``
    holds the keyword arguments of :func:`autotool_beta`). Every term shares one aggregation, so one
    (sum, denominator) pair carries the whole objective; with ``seq_mean_token_mean`` the AutoTool
    term is exactly ``mean_i β_i H_i``. ``entropy_BT`` is the *current* policy's entropy and
    carries gradient only through the two entropy terms; advantages are data.

    ``agg`` and ``kl_estimator`` are registered names or looked-up entries (as is
    ``autotool["gate"]``); a recipe passes entries, so nothing is looked up per call. Shapes:
    ``[B, T]`` per token (``loss_mask_BT`` > 0 on trained tokens, its value the weight),
    ``short_mode_B`` ``[B]``.

    Metrics are (sum, count) pairs; ``autotool/beta_long_grad`` feeds :func:`update_beta_long`.
    """
    if kl_coef and ref_logp_BT is None:
        raise ValueError("kl_coef > 0 needs ref_logp_BT (reference policy logprobs)")
    if autotool is not None and (short_mode_B is None or beta_long is None):
        raise ValueError("the AutoTool entropy term needs short_mode_B and beta_long")
    agg_fn = LOSS_AGGS.resolve(agg)
    valid = _valid(loss_mask_BT)
    pg, metrics = ppo_clip_loss(logp_BT, old_logp_BT, advantages_BT, loss_mask_BT,
                                eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
    total = pg
    metrics["pg/loss"] = agg_fn(pg, loss_mask_BT, agg_constant)
    ent = jnp.where(valid, jnp.asarray(entropy_BT, jnp.float32), 0.0)
    metrics["policy/entropy"] = mean_pair(jax.lax.stop_gradient(ent), valid)
    if kl_coef:
        kl = kl_penalty(logp_BT, ref_logp_BT, loss_mask_BT, estimator=kl_estimator,
                        clamp=kl_clamp)
        metrics["kl/ref"] = mean_pair(jax.lax.stop_gradient(kl), valid)
        total = total + kl_coef * kl
    if entropy_coef:
        total = total - entropy_coef * ent
    if autotool is not None:
        beta_BT, h_B, long_B = autotool_beta(entropy_BT, loss_mask_BT, short_mode_B, beta_long,
                                             **autotool)
        total = total - beta_BT * ent
        metrics["autotool/beta"] = mean_pair(beta_BT, valid)
        metrics["autotool/beta_long_grad"] = beta_long_grad_pair(h_B, long_B,
                                                                 autotool["target_long"])
    loss_sum, denom = agg_fn(total, loss_mask_BT, agg_constant)
    return loss_sum, denom, metrics
