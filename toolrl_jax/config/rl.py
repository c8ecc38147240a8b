"""RL section of the config: recipe choice and the knobs of its components.

Owned by the RL core (toolrl_jax/rl/). Every knob is declared here once.

A recipe (``grpo``, ``dapo``, …) is a *preset*: it names one choice for each component (reward,
filters, advantage, shaping, loss aggregation, clipping). Component fields default to ``None``,
which means "what the recipe says"; setting one overrides the preset, so components combine
freely (e.g. ``recipe='tepo_dense', filters=('all_tools_failed', 'all_correct_or_wrong')`` puts
TAO-RL's filters in front of TEPO's rewards). :meth:`RLConfig.resolved` fills every ``None`` from
:data:`RECIPE_PRESETS`; the RL code only ever reads a resolved config.

Component names are not listed here: each is the name a function was registered under in
:mod:`toolrl_jax.rl.registry` (:data:`COMPONENT_TABLES` says which table each key reads), and
:meth:`RLConfig.validate` checks them against those tables when the config is loaded. Filters
(``rl.filters``, host-side, shapes stay static): ``all_tools_failed`` (TAO-RL: rows with >= 1
call, all failed; kept in the group baseline), ``all_correct_or_wrong`` (TAO-RL: groups all correct
or all wrong), ``zero_variance`` (DAPO dynamic sampling / AutoTool refinement: groups with equal
rewards), ``void_turn`` (SimpleTIR: rows with a turn that has neither a complete call nor an
answer). Group filters (the registry's ``drops_groups``) make the loop oversample and refill.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from toolrl_jax.config.core import require
from toolrl_jax.rl import registry

#: Config key -> the registry table its name(s) must come from (``filters``: a tuple of names).
COMPONENT_TABLES: dict[str, registry.Table] = {
    "reward": registry.REWARDS,
    "filters": registry.FILTERS,
    "advantage": registry.ADVANTAGES,
    "shaping": registry.SHAPERS,
    "loss_agg": registry.LOSS_AGGS,
    "kl_estimator": registry.KL_ESTIMATORS,
    "autotool_entropy_gate": registry.AUTOTOOL_GATES,
}


def choices(key: str) -> list[str]:
    """The names ``rl.<key>`` accepts (a component key of :data:`COMPONENT_TABLES`), sorted."""
    return COMPONENT_TABLES[key].names()


# What every recipe uses unless its preset says otherwise (preset-able fields that most recipes
# leave alone: the plain entropy bonus, DAPO-style dynamic sampling and the shaping scope).
PRESET_DEFAULTS: dict[str, Any] = dict(entropy_coef=0.0, oversample_factor=1.5,
                                       max_sample_rounds=3, refill="pad", shaping_scope="batch")

# Each recipe's choice for every ``None``-default field below (merged over PRESET_DEFAULTS).
# Values from DESIGN.md §4 and the papers: DAPO clip-higher 0.2/0.28 + token-mean + overlong buffer
# (4096 of 20480 = 0.2); Dr.GRPO sums tokens over a constant. TAO-RL: its released code
# (github.com/WhyNot22222/TAO-RL, recipe/tao_rl/config/tao_rl_trainer.yaml + train.sh), setting by
# setting in docs/methods.md and pinned by tests/rl/test_tao_rl_preset.py.
_RECIPES: dict[str, dict[str, Any]] = {
    "grpo": dict(reward="outcome", advantage="grpo", filters=(), shaping="none",
                 loss_agg="seq_mean_token_mean", clip_eps_low=0.2, clip_eps_high=0.2,
                 dual_clip=0.0, overlong_buffer_ratio=0.0, format_weight=0.0,
                 autotool_entropy=False),
    "dapo": dict(reward="outcome", advantage="grpo", filters=("zero_variance",), shaping="none",
                 loss_agg="token_mean", clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=0.0,
                 overlong_buffer_ratio=0.2, format_weight=0.0, autotool_entropy=False),
    "dr_grpo": dict(reward="outcome", advantage="dr_grpo", filters=(), shaping="none",
                    loss_agg="constant", clip_eps_low=0.2, clip_eps_high=0.2, dual_clip=0.0,
                    overlong_buffer_ratio=0.0, format_weight=0.0, autotool_entropy=False),
    "tepo_sparse": dict(reward="tepo_sparse", advantage="grpo", filters=(), shaping="none",
                        loss_agg="token_mean", clip_eps_low=0.2, clip_eps_high=0.2,
                        dual_clip=0.0, overlong_buffer_ratio=0.0, format_weight=0.0,
                        autotool_entropy=False),
    "tepo_dense": dict(reward="tepo_dense", advantage="tepo_tool", filters=(), shaping="none",
                       loss_agg="token_mean", clip_eps_low=0.2, clip_eps_high=0.2,
                       dual_clip=0.0, overlong_buffer_ratio=0.0, format_weight=0.0,
                       autotool_entropy=False),
    # TAO-RL's released config: clip_ratio_low/high 0.2/0.28, clip_ratio_c 3 (dual-clip),
    # verl's token-mean loss, mask_void_turns=True, entropy_coeff=0.001 (train.sh), rejection
    # sampling of zero-variance groups over OVERSAMPLE=3 x the batch (train.sh; the yaml's 2.0 is
    # overridden), the shortfall filled by repeating surviving groups (repeat_with_uid_suffix),
    # a fresh batch only when no group survives; AEPO shaping coefficient 0.01 with its z-score
    # taken per update micro-batch (dp_actor.update_policy).
    "tao_rl": dict(reward="outcome", advantage="grpo",
                   filters=("all_tools_failed", "all_correct_or_wrong", "void_turn"),
                   shaping="tao_post_tool", loss_agg="token_mean", clip_eps_low=0.2,
                   clip_eps_high=0.28, dual_clip=3.0, overlong_buffer_ratio=0.0,
                   format_weight=0.0, autotool_entropy=False, entropy_coef=0.001,
                   oversample_factor=3.0, max_sample_rounds=3, refill="duplicate",
                   shaping_scope="micro_batch"),
    "autotool": dict(reward="autotool", advantage="grpo", filters=("zero_variance",),
                     shaping="none", loss_agg="token_mean", clip_eps_low=0.2, clip_eps_high=0.2,
                     dual_clip=0.0, overlong_buffer_ratio=0.0, format_weight=1.0,
                     autotool_entropy=True),
}
RECIPE_PRESETS: dict[str, dict[str, Any]] = {
    name: {**PRESET_DEFAULTS, **preset} for name, preset in _RECIPES.items()}

#: How refill fills groups the filters left missing: ``pad`` = dropped groups at weight 0
#: (DAPO-style: the batch shrinks in effect); ``duplicate`` = copies of surviving groups at
#: weight 1 (TAO-RL's repeat_with_uid_suffix: every trained group carries signal).
REFILL_MODES = ("pad", "duplicate")
#: Token population of the shaping z-score: ``batch`` (all trained tokens of the step),
#: ``micro_batch`` (those of the update micro-batch the row lands in, as TAO-RL's actor computes
#: it), ``trajectory`` (the row's own tokens).
SHAPING_SCOPES = ("batch", "micro_batch", "trajectory")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """RL knobs. ``None`` = the recipe's preset (see :data:`RECIPE_PRESETS`)."""

    recipe: str = "grpo"  # a key of RECIPE_PRESETS

    # --- components (None: the recipe's choice; names: see COMPONENT_TABLES) --------------------
    reward: str | None = None
    advantage: str | None = None
    filters: tuple[str, ...] | None = None
    shaping: str | None = None
    loss_agg: str | None = None
    # PPO ratio clip [1 - low, 1 + high]; high > low is DAPO's clip-higher (keeps rare tokens able
    # to grow, which delays entropy collapse).
    clip_eps_low: float | None = None
    clip_eps_high: float | None = None
    # Dual-clip c > 1 bounds the loss of negative-advantage tokens at -A*c; 0 disables.
    dual_clip: float | None = None
    # DAPO overlong shaping: buffer = ratio * max_new_tokens tokens before the hard limit; 0 = off.
    overlong_buffer_ratio: float | None = None
    # Malformed output (format_ok = 0) adds -format_weight to the reward; 0 = off. AutoTool's
    # preset 1.0 makes a malformed answer worse than any well-formed one (its rewards are >= -1).
    format_weight: float | None = None
    # AutoTool's decoupled, mode- and target-gated entropy term -beta_i * H_i in the loss.
    autotool_entropy: bool | None = None

    # --- advantages -------------------------------------------------------------------------------
    # Group std uses ddof=1 (unbiased), as torch.std does in verl/TRL, so numbers match them.
    adv_std_ddof: int = 1
    # Added to the group std; 1e-6 as verl (TRL uses 1e-4). Zero-variance groups get A = 0.
    adv_eps: float = 1e-6

    # --- loss extras ------------------------------------------------------------------------------
    kl_coef: float = 0.0  # 0: no reference model needed (DAPO, Dr.GRPO drop the KL term)
    kl_estimator: str = "k3"  # k3 = exp(d) - 1 - d: unbiased, low variance, >= 0
    kl_clamp: float = 10.0  # per-token estimate clipped to [-clamp, clamp]; see losses.kl_penalty
    entropy_coef: float | None = None  # plain entropy bonus -c * H_t (carries gradient)
    # Dr.GRPO's constant normaliser (tokens per row); 0 = the rollout's max_new_tokens.
    loss_constant: int = 0

    # --- shaping ----------------------------------------------------------------------------------
    tao_coef: float = 0.01  # TAO-RL's a in A*(1 + a*g_t*z(H_t)); small, so signs never flip
    entropy_adv_alpha: float = 0.4  # exploration bonus A + min(alpha*H, |A|/kappa) (Cheng et al.)
    entropy_adv_kappa: float = 2.0  # kappa > 1 guarantees the bonus never flips A's sign
    # Train only on the top-rho highest-entropy ("forking") tokens of the batch; 1.0 = all tokens.
    top_entropy_ratio: float = 1.0
    # Where the shaping z-score's mean / std come from (SHAPING_SCOPES; None: the recipe's).
    shaping_scope: str | None = None

    # --- rewards ----------------------------------------------------------------------------------
    # TEPO dense bonus for an entropy-reducing call: F1*(1 + alpha*1{dH<0}). 0.5 keeps the outcome
    # dominant: a reducing call earns at most 1.5x what a non-reducing call with the same F1 earns.
    tepo_alpha: float = 0.5
    # m/n used by TEPO-sparse when a rollout made no call (n = 0). 1.0: a correct direct answer
    # keeps its full outcome reward (0.0 would make it indistinguishable from a wrong one).
    tepo_no_call_ratio: float = 1.0
    # AutoTool rewards: (correct-short, correct-long, wrong-long, wrong-short).
    autotool_rewards: tuple[float, float, float, float] = (1.0, 0.5, -0.5, -1.0)

    # --- AutoTool entropy term ---------------------------------------------------------------------
    # What the gate 1{H <= target} looks at. "row_mean" (default): H_i = mean token entropy of row
    # i over its loss tokens, since the paper's H_i and mode m_i are per sample; the per-token term
    # -beta_i*H_t aggregated with seq-mean-token-mean is then exactly mean_i beta_i*H_i. "token":
    # each token is gated by its own H_t (bonus only on low-entropy tokens). L_beta always uses H_i.
    autotool_entropy_gate: str = "row_mean"
    autotool_target_short: float = 0.1  # H_s
    autotool_target_long: float = 0.2  # H_l
    autotool_beta_short: float = 0.0  # beta_s (fixed)
    autotool_beta_long_init: float = 1e-2  # beta_l at step 0; then adapted by L_beta
    # SGD step on L_beta = mean_long(beta_l*(H_i - H_l)); 1e-3 moves beta_l ~1% per step at
    # |H_i - H_l| ~ 0.1, slow enough not to oscillate with the policy.
    autotool_beta_lr: float = 1e-3
    autotool_beta_max: float = 1.0  # beta_l is clamped to [0, max]

    # --- dynamic sampling (used when a group filter is on) ---------------------------------------
    # Prompts drawn = ceil(missing_groups * factor) per round (rl_loop.RLTrainer.collect draws
    # exactly that many), until the batch is full or max_sample_rounds; ``refill`` (REFILL_MODES)
    # says how still-missing groups are filled. None: the recipe's (PRESET_DEFAULTS).
    oversample_factor: float | None = None
    max_sample_rounds: int | None = None
    refill: str | None = None

    # --- logprob / entropy from hidden states --------------------------------------------------
    # Vocabulary columns per block of the streaming logsumexp (the T-chunk is train.logit_chunk).
    # 16384: Qwen's 152k vocabulary streams in 16 blocks of 9496 (a divisor: no padded head copy),
    # so peak logits memory is B*chunk*9496 fp32 (fwd+bwd temp 1/112 of naive at B=4, T=2048 in
    # benchmarks/entropy_memory.py, vs 1/7.8 with T-chunks alone); vocabularies <= 16384 are one
    # block, i.e. unchanged. 0 = never split V.
    vocab_chunk: int = 16384
    # Recompute the PPO "old" log-probs with the trainer's forward pass before the update instead
    # of using the sampler's (which come from cached decode). On-policy ratios are then exactly 1
    # even when the two paths round differently (bf16 on accelerators); costs one more forward.
    recompute_old_logp: bool = False

    def resolved(self) -> RLConfig:
        """This config with every ``None`` component replaced by the recipe's preset."""
        preset = RECIPE_PRESETS[self.recipe]
        fill = {k: v for k, v in preset.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)

    def validate(self, path: str) -> None:
        require(self.recipe in RECIPE_PRESETS,
                f"{path}.recipe={self.recipe!r} is not a recipe preset; choose one of "
                f"{sorted(RECIPE_PRESETS)}")
        r = self.resolved()
        for key, table in COMPONENT_TABLES.items():
            value = getattr(r, key)
            many = isinstance(value, tuple)
            for name in value if many else (value,):
                where = f"{path}.{key} has {name!r}, which" if many else f"{path}.{key}={name!r}"
                require(name in table, f"{where} is not a registered {table.kind}; "
                                       f"choose one of {table.names()}")
        require((r.reward == "tepo_dense") == (r.advantage == "tepo_tool"),
                f"{path}.reward={r.reward!r} with {path}.advantage={r.advantage!r}: per-call "
                "rewards (tepo_dense) and tool-level advantages (tepo_tool) go together")
        require(0 <= r.clip_eps_low < 1, f"{path}.clip_eps_low={r.clip_eps_low} must be in [0, 1)")
        require(r.clip_eps_high >= 0, f"{path}.clip_eps_high={r.clip_eps_high} must be >= 0")
        require(r.dual_clip == 0 or r.dual_clip > 1,
                f"{path}.dual_clip={r.dual_clip} must be 0 (off) or > 1")
        require(0 <= r.overlong_buffer_ratio < 1,
                f"{path}.overlong_buffer_ratio={r.overlong_buffer_ratio} must be in [0, 1)")
        require(r.format_weight >= 0, f"{path}.format_weight={r.format_weight} must be >= 0")
        require(self.adv_std_ddof in (0, 1), f"{path}.adv_std_ddof={self.adv_std_ddof} must be 0/1")
        require(self.adv_eps > 0, f"{path}.adv_eps must be > 0")
        require(self.kl_coef >= 0, f"{path}.kl_coef must be >= 0")
        require(r.entropy_coef >= 0, f"{path}.entropy_coef must be >= 0")
        require(r.refill in REFILL_MODES, f"{path}.refill={r.refill!r}; choose one of "
                                          f"{list(REFILL_MODES)}")
        require(r.shaping_scope in SHAPING_SCOPES, f"{path}.shaping_scope={r.shaping_scope!r}; "
                                                   f"choose one of {list(SHAPING_SCOPES)}")
        require(self.kl_clamp > 0, f"{path}.kl_clamp must be > 0")
        require(self.loss_constant >= 0, f"{path}.loss_constant must be >= 0")
        require(self.tao_coef >= 0, f"{path}.tao_coef must be >= 0")
        require(self.entropy_adv_alpha >= 0, f"{path}.entropy_adv_alpha must be >= 0")
        require(self.entropy_adv_kappa > 1,
                f"{path}.entropy_adv_kappa={self.entropy_adv_kappa} must be > 1 (sign safety)")
        require(0 < self.top_entropy_ratio <= 1,
                f"{path}.top_entropy_ratio={self.top_entropy_ratio} must be in (0, 1]")
        require(self.tepo_alpha >= 0, f"{path}.tepo_alpha={self.tepo_alpha} must be >= 0")
        require(0 <= self.tepo_no_call_ratio <= 1, f"{path}.tepo_no_call_ratio must be in [0, 1]")
        a = self.autotool_rewards
        require(a[0] >= a[1] >= a[2] >= a[3],
                f"{path}.autotool_rewards={a} must be ordered correct-short >= correct-long >= "
                "wrong-long >= wrong-short")
        require(self.autotool_beta_short >= 0, f"{path}.autotool_beta_short must be >= 0")
        require(0 <= self.autotool_beta_long_init <= self.autotool_beta_max,
                f"{path}.autotool_beta_long_init must be in [0, autotool_beta_max]")
        require(self.autotool_beta_lr >= 0, f"{path}.autotool_beta_lr must be >= 0")
        require(r.oversample_factor >= 1, f"{path}.oversample_factor must be >= 1")
        require(r.max_sample_rounds >= 1, f"{path}.max_sample_rounds must be >= 1")
        require(self.vocab_chunk >= 0, f"{path}.vocab_chunk must be >= 0 (0 = no V chunking)")
