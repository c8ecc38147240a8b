"""TAO-RL's preset = its released config (github.com/WhyNot22222/TAO-RL: tao_rl_trainer.yaml,
train.sh, dp_actor.update_policy, tao_rl_ray_trainer.fit), and the machinery it needs:
oversampling that draws more prompts, refill by repeating surviving groups, and the shaping
statistics' scope."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from toolrl_jax.config.rl import RLConfig
from toolrl_jax.rl.filters import RefillRule, refill
from toolrl_jax.rl.recipes import make_recipe
from toolrl_jax.rl.shaping import masked_zscore, tao_post_tool_shaping
from toolrl_jax.train import rl_loop


def test_preset_pins_every_official_setting():
    r = RLConfig(recipe="tao_rl").resolved()
    official = dict(
        reward="outcome", advantage="grpo",  # algorithm.adv_estimator=grpo, math reward
        # exec_error_filter (all tools failed), rejection_sample (zero-variance groups),
        # mask_void_turns=True
        filters=("all_tools_failed", "all_correct_or_wrong", "void_turn"),
        shaping="tao_post_tool", tao_coef=0.01,  # aepo_shaping_coeff=0.01
        shaping_scope="micro_batch",  # z-score inside the actor's micro-batch loop
        loss_agg="token_mean",  # verl's loss_agg_mode token-mean
        clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=3.0,  # clip_ratio_low/high/c
        entropy_coef=0.001,  # train.sh ENTROPY_COEFF
        kl_coef=0.0,  # use_kl_loss=False, kl_coef 0
        oversample_factor=3.0,  # train.sh OVERSAMPLE=3 (yaml's 2.0 overridden)
        refill="duplicate",  # repeat_with_uid_suffix(over_replicas)
        overlong_buffer_ratio=0.0, format_weight=0.0, autotool_entropy=False,
    )
    assert {k: getattr(r, k) for k in official} == official


def test_preset_fails_python_calls_that_wrote_to_stderr():
    """agent_utils.execute_predictions: len(stderr) > 0 makes the execution invalid. The tool
    half of the preset (config/tools.py:RECIPE_TOOL_PRESETS); an explicit setting wins."""
    from toolrl_jax.config.tools import PythonToolConfig, ToolsConfig
    assert ToolsConfig().for_recipe("tao_rl").python.stderr_fails is True
    for other in ("grpo", "dapo", "tepo_sparse", "autotool"):
        assert ToolsConfig().for_recipe(other).python.stderr_fails is False
    explicit = ToolsConfig(python=PythonToolConfig(stderr_fails=False))
    assert explicit.for_recipe("tao_rl").python.stderr_fails is False


def test_other_recipes_keep_their_defaults():
    for name in ("grpo", "dapo", "autotool"):
        r = RLConfig(recipe=name).resolved()
        assert (r.entropy_coef, r.refill, r.shaping_scope, r.oversample_factor) == (
            0.0, "pad", "batch", 1.5)


def test_bad_refill_or_scope_is_refused():
    from toolrl_jax.config.core import ConfigError
    with pytest.raises(ConfigError, match="refill"):
        RLConfig(recipe="tao_rl", refill="copy").validate("rl")
    with pytest.raises(ConfigError, match="shaping_scope"):
        RLConfig(recipe="tao_rl", shaping_scope="epoch").validate("rl")


# --- oversampling: the factor changes how many prompts collect() draws ------------------------


class _Part:
    """What collect() needs of a scored round: its records and a row selection."""

    def __init__(self, records):
        self.records_B = np.array(records, object)
        # a made-up outcome per prompt: correct when its id is a multiple of 3, id % 2 calls
        self.correct_B = np.array([r["id"] % 3 == 0 for r in records], np.float32)
        self.arrays = type("A", (), dict(num_calls_B=np.array([r["id"] % 2 for r in records])))

    def take(self, rows):
        return _Part(list(self.records_B[np.asarray(rows)]))


def _collect(monkeypatch, recipe_cfg, keep_fn, P=4, G=2, batch=4, with_counts=False):
    drawn = []

    class Engine:
        base_key = None

        def generate(self, params, prompts, g, prompt_ids=None, **kw):
            drawn.append(len(prompts))
            return [None] * (len(prompts) * g)

    recipe = make_recipe(recipe_cfg, group_size=G, max_new_tokens=16)
    rows_of = {}

    def fake_score(syntax, trajs, rows, seq_len, max_calls, **kw):
        part = _Part(rows)
        rows_of[id(part)] = rows
        return part

    monkeypatch.setattr(rl_loop, "score_batch", fake_score)
    monkeypatch.setattr(rl_loop, "reward_inputs", lambda s: s)
    monkeypatch.setattr(rl_loop, "concat_scored",
                        lambda parts: _Part([r for p in parts for r in p.records_B]))
    stub = dataclasses.replace(recipe, compute_rewards=lambda x: x,
                               filter=lambda r, x: _keep(x, keep_fn, G))
    cfg = type("C", (), {})()
    cfg.rollout = type("R", (), dict(group_size=G, prompts_per_step=P, max_tool_calls=1))()
    cfg.train = type("T", (), dict(seed=0))()
    trainer = object.__new__(rl_loop.RLTrainer)
    trainer.cfg, trainer.recipe, trainer.engine = cfg, stub, Engine()
    trainer.syntax, trainer.seq_len = None, 8
    counter = itertools.count()
    data = iter(lambda: [{"id": next(counter), "prompt_ids": [1, 2]} for _ in range(batch)],
                None)
    scored, weight, counts, rounds = trainer.collect(None, data, step=0)
    if with_counts:
        return drawn, scored, weight, rounds, counts
    return drawn, scored, weight, rounds


def _keep(part, keep_fn, G):
    ids = [r["id"] for r in part.records_B[::G]]
    keep = np.array([keep_fn(i) for i in ids], bool)
    return type("F", (), dict(group_keep_P=keep, counts={"filter/groups_dropped": int((~keep).sum())}))()


def test_oversample_factor_changes_prompts_drawn(monkeypatch):
    keep_all = lambda i: True  # noqa: E731
    drawn1, *_ = _collect(monkeypatch, RLConfig(recipe="tao_rl", oversample_factor=1.0), keep_all)
    drawn3, s, w, _ = _collect(monkeypatch, RLConfig(recipe="tao_rl"), keep_all)
    drawn15, *_ = _collect(monkeypatch, RLConfig(recipe="dapo"), keep_all)
    assert drawn1 == [4] and drawn3 == [12] and drawn15 == [6]  # ceil(P * factor), P = 4
    assert len(s.records_B) == 4 * 2 and np.all(w == 1)  # P groups of G rows picked


def test_duplicate_refill_repeats_survivors(monkeypatch):
    # Only prompt 1 survives among 12 drawn: TAO-RL repeats it to fill the batch, no 2nd round.
    drawn, s, w, rounds = _collect(monkeypatch, RLConfig(recipe="tao_rl"), lambda i: i == 1)
    assert drawn == [12] and rounds == 1
    assert [r["id"] for r in s.records_B] == [1] * 8 and np.all(w == 1)
    # pad (DAPO): samples the shortfall again, then pads with dropped groups at weight 0
    drawn, s, w, rounds = _collect(monkeypatch, RLConfig(recipe="tao_rl", refill="pad"),
                                   lambda i: i == 1)
    assert drawn == [12, 9, 9] and rounds == 3  # ceil(3 * 3) per later round
    assert list(w) == [1, 0, 0, 0]


def test_duplicate_refill_samples_again_when_nothing_survived(monkeypatch):
    drawn, s, w, rounds = _collect(monkeypatch, RLConfig(recipe="tao_rl"), lambda i: i == 13)
    assert drawn == [12, 12] and rounds == 2  # first 12 (ids 0..11) all dropped
    assert [r["id"] for r in s.records_B[::2]] == [13] * 4


def test_sampled_metrics_cover_every_round_before_the_filter(monkeypatch):
    # 24 prompts drawn over two rounds (ids 0..23), only id 13 kept: the kept batch is all id 13
    # (wrong, one call), while sampled/* average every drawn row — 8 of 24 ids are multiples of
    # 3, 12 of 24 odd.
    drawn, s, w, rounds, counts = _collect(monkeypatch, RLConfig(recipe="tao_rl"),
                                           lambda i: i == 13, with_counts=True)
    assert drawn == [12, 12] and float(s.correct_B.mean()) == 0.0
    assert counts["sampled/accuracy"] == pytest.approx(8 / 24)
    assert counts["sampled/tool_calls"] == pytest.approx(12 / 24)
    assert counts["filter/groups_dropped"] == 23


def test_refill_rule_and_refill_duplicate_units():
    rule = RefillRule(4, oversample_factor=2.0, max_rounds=3, duplicate=True)
    assert rule.prompts_to_request(0, 0) == 8
    assert rule.prompts_to_request(1, 1) == 0 and rule.prompts_to_request(0, 1) == 8
    assert rule.prompts_to_request(0, 3) == 0
    idx, w = refill([False, True, False, True, False], 5, duplicate=True)
    assert list(idx) == [1, 3, 1, 3, 1] and np.all(w == 1)
    idx, w = refill([False, False, False, False], 2, duplicate=True)  # none survived: pad
    assert list(idx) == [0, 1] and np.all(w == 0)


# --- shaping statistics' scope -----------------------------------------------------------------


def test_grouped_zscore_equals_zscore_of_each_group():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    valid = rng.uniform(size=(6, 5)) > 0.3
    valid[:, 0] = True
    groups = np.array([0, 1, 0, 2, 1, 0])
    z = np.asarray(masked_zscore(x, valid, group_B=groups))
    for g in (0, 1, 2):
        rows = groups == g
        np.testing.assert_allclose(z[rows], np.asarray(masked_zscore(x[rows], valid[rows])),
                                   rtol=1e-5, atol=1e-6)
    # batch scope differs (the comparison can fail)
    assert not np.allclose(z, np.asarray(masked_zscore(x, valid)))


@pytest.mark.parametrize("scope", ["batch", "micro_batch", "trajectory"])
def test_recipe_shaping_scope_sets_the_population(scope):
    rng = np.random.default_rng(1)
    B, T = 4, 6
    ent = rng.uniform(0.1, 2.0, size=(B, T)).astype(np.float32)
    mask = np.ones((B, T), np.float32)
    post = np.zeros((B, T), np.float32)
    post[:, 3:] = 1
    micro = np.array([0, 1, 0, 1], np.int32)
    recipe = make_recipe(RLConfig(recipe="tao_rl", shaping_scope=scope, tao_coef=0.5),
                         group_size=2, max_new_tokens=16)
    reward = np.array([1, 0, 1, 0], np.float32)
    adv, _, _ = recipe.advantages(reward, mask, entropy_BT=ent, post_tool_mask_BT=post,
                                  micro_batch_B=micro)
    groups = {"batch": None, "micro_batch": micro, "trajectory": np.arange(B)}[scope]
    base, _, _ = make_recipe(RLConfig(recipe="tao_rl", tao_coef=0.0), group_size=2,
                             max_new_tokens=16).advantages(reward, mask, entropy_BT=ent,
                                                           post_tool_mask_BT=post,
                                                           micro_batch_B=micro)
    want = tao_post_tool_shaping(base, ent, post, mask, 0.5, group_B=groups)
    np.testing.assert_allclose(np.asarray(adv), np.asarray(want), rtol=1e-6)


def test_micro_batch_scope_without_the_map_is_refused():
    recipe = make_recipe(RLConfig(recipe="tao_rl"), group_size=2, max_new_tokens=16)
    with pytest.raises(ValueError, match="micro_batch_B"):
        recipe.advantages(np.zeros(2, np.float32), np.ones((2, 3), np.float32),
                          entropy_BT=np.ones((2, 3), np.float32),
                          post_tool_mask_BT=np.ones((2, 3), np.float32))


def test_micro_batch_ids_match_the_train_step_split():
    """Rows grouped by micro_batch_ids are exactly the rows one micro-step of _train sees:
    mini-batch m = order[m*mini:(m+1)*mini], then _split_micro's strided cut."""
    from toolrl_jax.train.steps import _split_micro

    trainer = object.__new__(rl_loop.RLTrainer)
    trainer.cfg = type("C", (), dict(train=type("T", (), dict(seed=3, ppo_epochs=2))()))()
    trainer.batch_rows, trainer.mini_rows, trainer.micro_batches = 16, 8, 2
    ids = trainer.micro_batch_ids(step=5)
    order = trainer.row_orders(5)[0]
    for m in range(2):
        rows = order[m * 8:(m + 1) * 8]
        split = np.asarray(_split_micro(jnp.asarray(rows), 2))  # [n, B/n]: row ids per micro
        for i, micro_rows in enumerate(split):
            assert set(np.flatnonzero(ids == m * 2 + i)) == set(micro_rows.tolist())
