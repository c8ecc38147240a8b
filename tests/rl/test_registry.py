"""Component registries: a registered function is selectable by name (config and recipe), names
live only in the tables, and nothing in toolrl_jax/rl/ branches on a component name."""

import ast
import dataclasses
import glob
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from toolrl_jax.config import ConfigError, RLConfig, from_config_dict
from toolrl_jax.config.rl import COMPONENT_TABLES, RECIPE_PRESETS, choices
from toolrl_jax.rl import losses as L
from toolrl_jax.rl import registry
from toolrl_jax.rl.advantages import broadcast_to_tokens, grpo_advantages
from toolrl_jax.rl.filters import FilterResult
from toolrl_jax.rl.recipes import make_recipe
from toolrl_jax.rl.rewards import RewardInputs, Rewards

from .test_recipes import MAX_NEW, G, P, make_batch, run_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def temp_entry():
    """``add(table, name, fn, **meta)`` registers an entry for one test, then unregisters it."""
    added = []

    def add(table, name, fn, **meta):
        table.register(name, **meta)(fn)
        added.append((table, name))

    yield add
    for table, name in added:
        table.unregister(name)


def _recipe(**overrides):
    return make_recipe(RLConfig(**overrides), group_size=G, max_new_tokens=MAX_NEW)


# --- a dummy entry in each table is selectable ---------------------------------------------------


def test_registered_reward_is_selectable_from_the_config(temp_entry):
    temp_entry(registry.REWARDS, "test_twice",
               lambda cfg, x: (2.0 * np.asarray(x.score_B, np.float32), None))
    cd = ml_collections.ConfigDict({"rl": {"reward": "test_twice"}})
    recipe = make_recipe(from_config_dict(cd).rl, group_size=G, max_new_tokens=MAX_NEW)
    inputs, layout, old_logp = make_batch()
    out = run_step(recipe, inputs, layout, old_logp)
    np.testing.assert_array_equal(out["rewards"].reward_B, 2.0 * inputs.score_B)
    want = broadcast_to_tokens(grpo_advantages(2.0 * inputs.score_B, G), layout["loss_mask_BT"])
    np.testing.assert_allclose(out["adv"], want, rtol=1e-6)


def test_registered_row_and_group_filters(temp_entry):
    temp_entry(registry.FILTERS, "test_first_row", lambda r, x, g: np.arange(r.shape[0]) == 0,
               drops_groups=False)
    temp_entry(registry.FILTERS, "test_first_group", lambda r, x, g: np.arange(r.shape[0] // g) == 0,
               drops_groups=True)
    rows = _recipe(filters=("test_first_row",))
    groups = _recipe(filters=("test_first_group",))
    inputs, layout, old_logp = make_batch()
    out = run_step(rows, inputs, layout, old_logp)
    np.testing.assert_array_equal(out["filt"].row_weight_B, [0] + [1] * (P * G - 1))
    assert out["filt"].counts["filter/test_first_row"] == 1 and not rows.refill_rule(P).active
    assert np.all(np.asarray(out["grads"][0])[0] == 0)
    out = run_step(groups, inputs, layout, old_logp)
    np.testing.assert_array_equal(out["filt"].group_keep_P, [False, True])
    assert out["filt"].counts == {"filter/test_first_group": G, "filter/rows_dropped": G,
                                  "filter/groups_dropped": 1}
    assert groups.refill_rule(P).active  # derived from the entry's drops_groups
    assert "test_first_group" in registry.group_filters()


def test_builtin_group_filters_are_derived_from_the_table():
    assert registry.group_filters() == ["all_correct_or_wrong", "zero_variance"]


def test_registered_advantage_is_selectable(temp_entry):
    def half(cfg, reward_B, mask_BT, *, group_size, call_reward_BK=None, num_calls_B=None,
             segment_ids_BT=None):
        return jnp.where(mask_BT > 0, 0.5, 0.0)

    temp_entry(registry.ADVANTAGES, "test_half", half)
    out = run_step(_recipe(advantage="test_half"), *make_batch())
    np.testing.assert_array_equal(out["adv"], 0.5 * (out["mask"] > 0))


def test_registered_shaper_is_selectable(temp_entry):
    temp_entry(registry.SHAPERS, "test_negate", lambda adv, ent, post, mask, cfg: -adv)
    inputs, layout, old_logp = make_batch()
    got = run_step(_recipe(shaping="test_negate"), inputs, layout, old_logp)["adv"]
    want = run_step(_recipe(), inputs, layout, old_logp)["adv"]
    np.testing.assert_array_equal(got, -want)


def test_registered_loss_aggregation_is_selectable(temp_entry):
    def plain_sum(loss_BT, mask_BT, constant):
        return L.agg_token_mean(loss_BT, mask_BT, constant)[0], jnp.float32(1.0)

    temp_entry(registry.LOSS_AGGS, "test_sum", plain_sum)
    inputs, layout, old_logp = make_batch()
    got = run_step(_recipe(loss_agg="test_sum"), inputs, layout, old_logp)
    want = run_step(_recipe(loss_agg="token_mean"), inputs, layout, old_logp)
    s, d = want["metrics"]["pg/loss"]
    np.testing.assert_allclose(got["obj"], s, rtol=1e-6)  # same sum, denominator 1
    np.testing.assert_allclose(got["obj"], want["obj"] * d, rtol=1e-6)


def test_registered_kl_estimator_is_selectable(temp_entry):
    temp_entry(registry.KL_ESTIMATORS, "test_abs", jnp.abs)
    inputs, layout, old_logp = make_batch()
    recipe = _recipe(kl_coef=0.1, kl_estimator="test_abs")
    adv = jnp.zeros(old_logp.shape)
    mask = jnp.asarray(layout["loss_mask_BT"])
    _, _, m = recipe.loss(old_logp + 0.3 * mask, layout["entropy_BT"], old_logp, adv, mask,
                          ref_logp_BT=old_logp)
    s, c = m["kl/ref"]
    np.testing.assert_allclose(float(s) / float(c), 0.3, rtol=1e-5)  # |d| = 0.3 on every token


def test_registered_autotool_gate_is_selectable(temp_entry):
    temp_entry(registry.AUTOTOOL_GATES, "test_open", lambda ent_BT, h_B: jnp.zeros_like(h_B)[:, None])
    inputs, layout, old_logp = make_batch()
    layout = {**layout, "entropy_BT": layout["loss_mask_BT"] * 5.0}  # far above both targets
    kw = dict(recipe="autotool", autotool_beta_short=0.3)
    closed = run_step(_recipe(**kw), inputs, layout, old_logp)["metrics"]["autotool/beta"]
    opened = run_step(_recipe(autotool_entropy_gate="test_open", **kw), inputs, layout,
                      old_logp)["metrics"]["autotool/beta"]
    assert float(closed[0]) == 0.0  # row_mean gate: H_i = 5 > targets, β = 0 everywhere
    # open gate: short rows (every other row) get β_s, long rows β_l; all rows have 6 tokens
    want = (0.3 + RLConfig().autotool_beta_long_init) / 2
    np.testing.assert_allclose(float(opened[0]) / float(opened[1]), want, rtol=1e-6)


# --- tables: lookup, registration, config names ----------------------------------------------


def test_lookup_errors_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown reward 'nope'; choose one of \['autotool', "):
        registry.REWARDS["nope"]
    with pytest.raises(ValueError, match="unknown loss aggregation 'nope'"):
        L.aggregate(jnp.zeros((1, 1)), jnp.ones((1, 1)), "nope")
    with pytest.raises(ValueError, match="already registered"):
        registry.REWARDS.register("outcome")(lambda cfg, x: (x.score_B, None))
    with pytest.raises(TypeError, match="no metadata"):
        registry.REWARDS.register("test_meta", drops_groups=True)(lambda cfg, x: None)
    assert "test_meta" not in registry.REWARDS


def test_config_names_are_the_registry_keys():
    assert sorted(map(id, COMPONENT_TABLES.values())) == sorted(map(id, registry.TABLES))
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    for key, table in COMPONENT_TABLES.items():
        assert key in fields
        assert choices(key) == sorted(table) == table.names() and len(table) > 0
    assert choices("reward") == ["autotool", "outcome", "tepo_dense", "tepo_sparse"]
    assert choices("filters") == ["all_correct_or_wrong", "all_tools_failed", "void_turn",
                                  "zero_variance"]
    assert choices("advantage") == ["dr_grpo", "grpo", "rloo", "tepo_tool"]
    assert choices("shaping") == ["entropy_bonus", "none", "tao_post_tool"]
    assert choices("loss_agg") == ["constant", "seq_mean_token_mean", "seq_mean_token_sum",
                                   "token_mean"]
    assert choices("kl_estimator") == ["k1", "k2", "k3"]
    assert choices("autotool_entropy_gate") == ["row_mean", "token"]


@pytest.mark.parametrize("key", sorted(COMPONENT_TABLES))
def test_every_registered_name_is_accepted_and_others_refused(key):
    for name in choices(key):
        value = (name,) if key == "filters" else name
        extra = {}
        if (key, name) in (("reward", "tepo_dense"), ("advantage", "tepo_tool")):
            extra = dict(reward="tepo_dense", advantage="tepo_tool")  # they go together
        RLConfig(**{key: value, **extra}).validate("rl")
    bad = ("zero_variance", "bogus") if key == "filters" else "bogus"
    with pytest.raises(ConfigError) as e:
        RLConfig(**{key: bad}).validate("rl")
    msg = str(e.value)
    assert f"rl.{key}" in msg and "'bogus'" in msg and str(choices(key)) in msg


@pytest.mark.parametrize("recipe", sorted(RECIPE_PRESETS))
def test_presets_name_only_registered_components(recipe):
    preset = RECIPE_PRESETS[recipe]
    for key, table in COMPONENT_TABLES.items():
        if key in preset:
            value = preset[key]
            for name in value if isinstance(value, tuple) else (value,):
                assert name in table, (recipe, key, name)
    RLConfig(recipe=recipe).validate("rl")


def test_rewards_and_filter_results_are_frozen_pytrees():
    x = RewardInputs(score_B=np.ones(2), num_calls_B=np.zeros(2, np.int32))
    assert len(jax.tree.leaves(x)) == 2
    y = jax.tree.map(lambda a: a + 1, x)
    assert isinstance(y, RewardInputs) and np.all(y.score_B == 2) and y.correct_B is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.score_B = np.zeros(2)
    r = Rewards(np.ones(2), None, {"reward/base": np.ones(2)})
    assert len(jax.tree.leaves(r)) == 2
    f = FilterResult(np.ones(2), np.ones(1, bool), {"filter/rows_dropped": 0})
    assert len(jax.tree.leaves(f)) == 3
    with pytest.raises(ValueError, match=r"RewardInputs\.short_mode_B is required by reward"):
        _recipe(recipe="autotool").compute_rewards(x)


# --- import hygiene and no branching on names -----------------------------------------------------


def test_registry_and_math_modules_do_not_import_the_config():
    code = (
        "import sys\n"
        "import toolrl_jax.rl.registry as r\n"
        "assert 'jax' not in sys.modules, 'registry imports JAX'\n"
        "names = [t.names() for t in r.TABLES]\n"
        "import toolrl_jax.rl.entropy, toolrl_jax.rl.tool_entropy\n"
        "bad = [m for m in sys.modules if m.startswith(('toolrl_jax.config', 'toolrl_jax.rl.recipes'))]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
    assert out.returncode == 0, out.stderr


def _string_comparisons(path):
    tree = ast.parse(open(path).read())
    is_str = lambda n: isinstance(n, ast.Constant) and isinstance(n.value, str)
    for node in ast.walk(tree):
        if isinstance(node, ast.MatchValue) and is_str(node.value):  # match name: case "x"
            yield f"{os.path.relpath(path, ROOT)}:{node.lineno}"
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            elts = [e for o in operands if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                    for e in o.elts]
            if any(is_str(o) for o in operands + elts):
                yield f"{os.path.relpath(path, ROOT)}:{node.lineno}"


def test_rl_code_never_compares_strings():
    """Component choice is a table lookup in make_recipe, never ``if name == ...``."""
    paths = sorted(glob.glob(os.path.join(ROOT, "toolrl_jax", "rl", "*.py")))
    assert paths
    assert [hit for p in paths for hit in _string_comparisons(p)] == []
