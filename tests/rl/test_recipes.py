"""Recipes: config presets and overrides, one code path for every recipe, and the cross-cutting
invariants (filtered rows give zero gradient but stay in the baseline; entropies that feed
advantages carry no gradient; β_l adapts in the right direction)."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from toolrl_jax.config import ConfigError, RLConfig, default_config_dict, from_config_dict
from toolrl_jax.config.rl import RECIPE_PRESETS
from toolrl_jax.rl.advantages import broadcast_to_tokens, grpo_advantages
from toolrl_jax.rl.recipes import RewardInputs, make_recipe
from toolrl_jax.rl.tool_entropy import call_entropy_deltas
from toolrl_jax.types import ToolStatus

P, G, T, K, MAX_NEW = 2, 4, 12, 2, 10
_deltas = jax.jit(call_entropy_deltas, static_argnums=3)
B = P * G
ERR, OK = int(ToolStatus.ERROR), int(ToolStatus.OK)


def make_batch(seed=0):
    """Rows: prompt (2 tokens), seg0 (3), call-result (2), seg1 (3), padding. 1 call each."""
    rng = np.random.default_rng(seed)
    seg = np.full((B, T), -1, np.int32)
    seg[:, 2:5] = 0
    seg[:, 7:10] = 1
    loss_mask = (seg >= 0).astype(np.float32)
    post = (seg >= 1).astype(np.float32)
    ent = rng.uniform(0.1, 2.0, size=(B, T)).astype(np.float32) * loss_mask
    num_calls = np.ones(B, np.int32)
    status = np.full((B, K), -1)
    status[:, 0] = OK
    status[1, 0] = ERR  # row 1: its only call errored
    correct = np.array([1, 0, 1, 0, 1, 0, 0, 0], np.float32)
    d = {k: np.asarray(v) for k, v in _deltas(ent, seg, num_calls, K).items()}
    inputs = RewardInputs(
        score_B=correct, format_ok_B=np.ones(B), length_B=np.full(B, 6),
        short_mode_B=np.array([1, 0] * 4), num_calls_B=num_calls,
        delta_entropy_BK=d["delta_BK"], delta_valid_BK=d["valid_BK"], call_status_BK=status,
        void_turn_B=np.zeros(B, bool))
    # micro_batch_B: two strided micro-batches, as the trainer's row -> micro-batch map
    # (rl.shaping_scope='micro_batch', TAO-RL's preset).
    layout = dict(loss_mask_BT=loss_mask, entropy_BT=ent, post_tool_mask_BT=post,
                  segment_ids_BT=seg, num_calls_B=num_calls,
                  micro_batch_B=np.arange(B, dtype=np.int32) % 2)
    old_logp = -rng.uniform(0.5, 2.0, size=(B, T)).astype(np.float32) * loss_mask
    return inputs, layout, old_logp


def run_step(recipe, inputs, layout, old_logp, logp_shift=0.1):
    """What a train step does — identical for every recipe (no branching on names)."""
    rewards = recipe.compute_rewards(inputs)
    filt = recipe.filter(rewards, inputs)
    adv_fn = jax.jit(lambda r, cr, w, lay: recipe.advantages(r, lay["loss_mask_BT"],
                                                             row_weight_B=w, call_reward_BK=cr,
                                                             **{k: v for k, v in lay.items()
                                                                if k != "loss_mask_BT"}))
    adv, mask, adv_metrics = adv_fn(rewards.reward_B, rewards.call_reward_BK, filt.row_weight_B,
                                    layout)
    logp = jnp.asarray(old_logp) + logp_shift * jnp.asarray(layout["loss_mask_BT"])
    ent = jnp.asarray(layout["entropy_BT"])
    beta = jnp.float32(recipe.init_beta_long)

    def objective(logp, ent):
        s, d, m = recipe.loss(logp, ent, old_logp, adv, mask, ref_logp_BT=old_logp,
                              short_mode_B=jnp.asarray(inputs.short_mode_B), beta_long=beta)
        return s / d, m

    (obj, metrics), grads = jax.jit(jax.value_and_grad(objective, (0, 1), has_aux=True))(
        logp, ent)
    new_beta = recipe.update_beta(beta, metrics)
    return dict(rewards=rewards, filt=filt, adv=adv, mask=mask, obj=obj, metrics=metrics,
                grads=grads, beta=new_beta, adv_metrics=adv_metrics)


@pytest.mark.parametrize("name", sorted(RECIPE_PRESETS))
def test_every_recipe_runs_through_one_code_path(name):
    recipe = make_recipe(RLConfig(recipe=name), group_size=G, max_new_tokens=MAX_NEW)
    out = run_step(recipe, *make_batch())
    assert recipe.name == name
    assert out["adv"].shape == (B, T) and out["mask"].shape == (B, T)
    assert np.isfinite(float(out["obj"]))
    for g in out["grads"]:
        assert g.shape == (B, T) and np.all(np.isfinite(np.asarray(g)))
    assert np.any(np.asarray(out["grads"][0]) != 0)
    for s, c in out["metrics"].values():
        assert np.isfinite(float(s)) and np.isfinite(float(c))


def test_presets_follow_design():
    r = {n: RLConfig(recipe=n).resolved() for n in RECIPE_PRESETS}
    assert (r["dapo"].clip_eps_low, r["dapo"].clip_eps_high, r["dapo"].loss_agg) == (
        0.2, 0.28, "token_mean")
    assert (r["tao_rl"].dual_clip, r["tao_rl"].clip_eps_high) == (3.0, 0.28)
    assert r["dr_grpo"].advantage == "dr_grpo" and r["dr_grpo"].loss_agg == "constant"
    assert r["tepo_dense"].advantage == "tepo_tool"
    assert r["autotool"].autotool_entropy and r["autotool"].reward == "autotool"
    assert (RLConfig().tao_coef, RLConfig().autotool_target_short,
            RLConfig().autotool_target_long, RLConfig().autotool_beta_short,
            RLConfig().autotool_beta_long_init) == (0.01, 0.1, 0.2, 0.0, 1e-2)
    # Open details, pinned: TEPO α, the n = 0 case, what AutoTool's H_i averages over.
    assert (RLConfig().tepo_alpha, RLConfig().tepo_no_call_ratio,
            RLConfig().autotool_entropy_gate) == (0.5, 1.0, "row_mean")


def test_config_overrides_combine_components():
    cd = default_config_dict()
    cd.rl.recipe = "tepo_dense"
    cd.rl.filters = ("all_tools_failed", "all_correct_or_wrong")  # TAO filters + TEPO rewards
    cfg = from_config_dict(cd).rl.resolved()
    assert cfg.reward == "tepo_dense" and cfg.filters == ("all_tools_failed",
                                                          "all_correct_or_wrong")
    recipe = make_recipe(from_config_dict(cd).rl, group_size=G, max_new_tokens=MAX_NEW)
    out = run_step(recipe, *make_batch())
    assert out["filt"].counts["filter/all_tools_failed"] == 1
    assert recipe.refill_rule(P).active


@pytest.mark.parametrize("rl,key", [
    ({"recipe": "ppo"}, "config.rl.recipe"),
    ({"filters": ["bogus"]}, "config.rl.filters"),
    ({"clip_eps_high": -0.1}, "config.rl.clip_eps_high"),
    ({"dual_clip": 0.5}, "config.rl.dual_clip"),
    ({"entropy_adv_kappa": 1.0}, "config.rl.entropy_adv_kappa"),
    ({"reward": "tepo_dense"}, "config.rl.reward"),  # without tool-level advantages
    ({"autotool_rewards": [1.0, -1.0, 0.5, -0.5]}, "config.rl.autotool_rewards"),
    ({"tepo_alfa": 1.0}, "tepo_alpha"),  # typo: the error suggests the real key
])
def test_bad_config_names_the_key(rl, key):
    cd = ml_collections.ConfigDict({"rl": rl})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_config_dict(cd)


def test_all_errored_trajectory_gets_zero_gradient_but_stays_in_baseline():
    inputs, layout, old_logp = make_batch()
    cfg = RLConfig(recipe="tao_rl", filters=("all_tools_failed",))
    out = run_step(make_recipe(cfg, group_size=G, max_new_tokens=MAX_NEW), inputs, layout,
                   old_logp)
    g_logp = np.asarray(out["grads"][0])
    assert np.all(g_logp[1] == 0) and np.any(g_logp[0] != 0)
    assert np.all(np.asarray(out["mask"])[1] == 0)
    # Baseline: row 0's advantage (before shaping) is GRPO over all 4 rows, the errored row
    # included: rewards (1,0,1,0) -> +0.866. Without row 1 it would be (1,1,0) -> +0.577.
    a_full = np.asarray(grpo_advantages(inputs.score_B, G))
    np.testing.assert_allclose(a_full[0], 0.5 / np.sqrt(1 / 3), rtol=1e-5)
    seg0 = layout["segment_ids_BT"][0] == 0  # pre-tool tokens are unshaped
    np.testing.assert_allclose(np.asarray(out["adv"])[0][seg0], a_full[0], rtol=1e-6)


def test_all_correct_and_all_wrong_groups_are_removed():
    inputs, layout, old_logp = make_batch()
    inputs = dataclasses.replace(inputs, score_B=np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32))
    recipe = make_recipe(RLConfig(recipe="tao_rl"), group_size=G, max_new_tokens=MAX_NEW)
    out = run_step(recipe, inputs, layout, old_logp)
    np.testing.assert_array_equal(out["filt"].group_keep_P, [False, True])
    assert out["filt"].counts["filter/all_correct_or_wrong"] == 4
    assert np.all(np.asarray(out["grads"][0])[:4] == 0)
    # TAO-RL refills by repeating survivors: with one group kept nothing more is sampled, with
    # none kept a fresh oversampled batch is (ceil(2 * 3)); rl.refill='pad' samples the shortfall.
    assert recipe.refill_rule(P).prompts_to_request(1, 1) == 0
    assert recipe.refill_rule(P).prompts_to_request(0, 1) == 6
    pad = make_recipe(RLConfig(recipe="tao_rl", refill="pad"), group_size=G,
                      max_new_tokens=MAX_NEW)
    assert pad.refill_rule(P).prompts_to_request(1, 1) == 3  # ceil(1 * 3)


def test_tao_recipe_with_zero_coef_equals_grpo_exactly():
    inputs, layout, old_logp = make_batch()
    # entropy_coef: TAO-RL's 0.001 plain bonus is a loss term, not shaping; equalised here.
    base = dict(filters=(), loss_agg="token_mean", clip_eps_high=0.28, dual_clip=3.0,
                entropy_coef=0.0)
    tao = make_recipe(RLConfig(recipe="tao_rl", tao_coef=0.0, **base), group_size=G,
                      max_new_tokens=MAX_NEW)
    grpo = make_recipe(RLConfig(recipe="grpo", **base), group_size=G, max_new_tokens=MAX_NEW)
    a, b = run_step(tao, inputs, layout, old_logp), run_step(grpo, inputs, layout, old_logp)
    np.testing.assert_array_equal(a["adv"], b["adv"])
    np.testing.assert_array_equal(a["obj"], b["obj"])
    # and with a > 0 the post-tool tokens do move (the comparison can fail)
    shaped = make_recipe(RLConfig(recipe="tao_rl", tao_coef=0.5, **base), group_size=G,
                         max_new_tokens=MAX_NEW)
    assert not np.array_equal(run_step(shaped, inputs, layout, old_logp)["adv"], b["adv"])
    want = broadcast_to_tokens(grpo_advantages(inputs.score_B, G), layout["loss_mask_BT"])
    np.testing.assert_allclose(b["adv"], want, rtol=1e-6)


@pytest.mark.parametrize("name,overrides", [
    ("tao_rl", {}), ("grpo", {"shaping": "entropy_bonus"}), ("grpo", {"top_entropy_ratio": 0.5}),
    ("tepo_dense", {}), ("autotool", {}),
])
def test_entropy_feeding_advantages_carries_no_gradient(name, overrides):
    """Differentiate the loss w.r.t. the entropy that *feeds the advantages*: must be 0."""
    inputs, layout, old_logp = make_batch()
    recipe = make_recipe(RLConfig(recipe=name, **overrides), group_size=G,
                         max_new_tokens=MAX_NEW)
    rewards = recipe.compute_rewards(inputs)
    ent_now = jnp.asarray(layout["entropy_BT"])

    def objective(ent_for_adv):
        lay = {**layout, "entropy_BT": ent_for_adv}
        adv, mask, _ = recipe.advantages(rewards.reward_B, lay.pop("loss_mask_BT"),
                                         call_reward_BK=rewards.call_reward_BK, **lay)
        s, d, _ = recipe.loss(old_logp + 0.1, ent_now, old_logp, adv, mask,
                              short_mode_B=jnp.asarray(inputs.short_mode_B),
                              beta_long=recipe.init_beta_long)
        return s / d

    g = jax.jit(jax.grad(objective))(ent_now)
    assert np.all(np.asarray(g) == 0)


def test_tepo_sparse_recipe_reward_is_f1_when_all_calls_reduce_entropy():
    inputs, layout, _ = make_batch()
    f1 = np.linspace(0, 1, B).astype(np.float32)
    x = dataclasses.replace(inputs, score_B=f1, delta_entropy_BK=np.full((B, K), -0.3),
                            delta_valid_BK=np.tile([True, False], (B, 1)))
    r = make_recipe(RLConfig(recipe="tepo_sparse"), group_size=G, max_new_tokens=MAX_NEW)
    np.testing.assert_allclose(r.compute_rewards(x).reward_B, f1, rtol=1e-6)


def test_dapo_overlong_and_autotool_format_rewards():
    inputs, _, _ = make_batch()
    x = dataclasses.replace(inputs, length_B=np.array([6, 8, 9, 10] * 2))
    r = make_recipe(RLConfig(recipe="dapo"), group_size=G, max_new_tokens=MAX_NEW)
    # buffer = 0.2 * 10 = 2 tokens: free up to 8, -0.5 at 9, -1 at 10
    np.testing.assert_allclose(r.compute_rewards(x).components["reward/overlong"],
                               [0, 0, -0.5, -1] * 2)
    x = dataclasses.replace(inputs, format_ok_B=np.array([1, 0] * 4))
    a = make_recipe(RLConfig(recipe="autotool"), group_size=G, max_new_tokens=MAX_NEW)
    # correct-short 1, wrong-long -.5 - 1 (format), correct-short 1, wrong-long -1.5, ...
    np.testing.assert_allclose(a.compute_rewards(x).reward_B[:4], [1, -1.5, 1, -1.5])


@pytest.mark.parametrize("level,direction", [(0.05, 1), (1.5, -1)])
def test_autotool_beta_long_rises_below_target_and_falls_above(level, direction):
    inputs, layout, old_logp = make_batch()
    layout = {**layout, "entropy_BT": layout["loss_mask_BT"] * level}
    recipe = make_recipe(RLConfig(recipe="autotool", autotool_beta_lr=0.1), group_size=G,
                         max_new_tokens=MAX_NEW)
    out = run_step(recipe, inputs, layout, old_logp)
    step = float(out["beta"]) - recipe.init_beta_long
    assert np.sign(step) == direction
    np.testing.assert_allclose(step, -0.1 * (level - 0.2) if level < 1 else -0.01, rtol=1e-4)
    # non-AutoTool recipes leave β alone (same call, identity)
    grpo = make_recipe(RLConfig(), group_size=G, max_new_tokens=MAX_NEW)
    assert grpo.update_beta(0.3, out["metrics"]) == 0.3
