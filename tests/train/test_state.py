"""Train state: optimiser moments sharded like their params; fp32 master weights keep tiny updates."""

import jax
import numpy as np
import optax

from toolrl_jax.config import MeshConfig, OptimConfig, RLConfig
from toolrl_jax.models.decoder import init_decoder
from toolrl_jax.rl.recipes import make_recipe
from toolrl_jax.sharding import make_mesh
from toolrl_jax.testing.tiny import tiny_qwen2_config
from toolrl_jax.train.batch import TrainBatch
from toolrl_jax.train.state import abstract_state, create_state, make_optimizer
from toolrl_jax.train.steps import build_step, jit_step, rl_loss_fn

B, T = 8, 24


def _leaves(tree):
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _param_of(opt_path: str, params: dict):
    """The param an optimiser-state leaf mirrors: the longest param path its path ends with."""
    hits = [p for p in params if opt_path.endswith(p)]
    return max(hits, key=len) if hits else None


def test_optimizer_state_is_sharded_like_params():
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    tx, _ = make_optimizer(OptimConfig(), 10)  # clip_by_global_norm + AdamW (+ schedule count)
    with jax.set_mesh(mesh):
        _, state = create_state(init_decoder(tiny_qwen2_config(), seed=0), tx, mesh)
    params = _leaves(state["params"])
    opt = _leaves(state["opt_state"])
    mirrored, scalars = 0, 0
    for path, leaf in opt.items():
        name = _param_of(path, params)
        if name is not None and leaf.shape == params[name].shape:
            assert leaf.sharding.is_equivalent_to(params[name].sharding, leaf.ndim), path
            assert leaf.sharding.spec == params[name].sharding.spec, path
            mirrored += 1
        else:
            assert leaf.ndim == 0, f"{path} {leaf.shape} mirrors no param"
            assert leaf.sharding.is_fully_replicated, path
            scalars += 1
    assert mirrored == 2 * len(params)  # Adam's mu and nu
    assert scalars >= 1  # Adam's count (and the schedule's)
    # Sharding is real: the moments of every 2-D weight are split 8 (fsdp × tensor) or 4 ways.
    mu_embed = next(v for k, v in opt.items() if "mu" in k and k.endswith("['embed_tokens']"))
    assert mu_embed.addressable_shards[0].data.size * 8 == mu_embed.size
    per_device = sum(s.data.nbytes for x in opt.values() for s in x.addressable_shards
                     if s.device == jax.devices()[0])
    full = sum(x.nbytes for x in opt.values())
    assert per_device < full / 3  # replicated moments would be `full` on every device


def test_abstract_state_matches_the_live_state():
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    cfg = tiny_qwen2_config()
    tx, _ = make_optimizer(OptimConfig(), 10)
    with jax.set_mesh(mesh):
        _, live = create_state(init_decoder(cfg, seed=0), tx, mesh)
    _, abstract = abstract_state(cfg, tx, mesh)
    a, b = _leaves(abstract), _leaves(live)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k].shape, a[k].dtype) == (b[k].shape, b[k].dtype), k
        assert a[k].sharding.spec == b[k].sharding.spec, k


def _batch(vocab):
    rng = np.random.default_rng(0)
    # Every token id occurs, so every embedding row gets a gradient.
    tokens = np.resize(rng.permutation(np.tile(np.arange(vocab), 2)), (B, T)).astype(np.int32)
    attn = np.ones((B, T), np.int32)
    return TrainBatch(tokens_BT=tokens, attn_mask_BT=attn, loss_mask_BT=attn.astype(np.float32),
                      old_logp_BT=np.full((B, T), -5.0, np.float32),
                      advantages_BT=np.repeat(rng.standard_normal((B, 1)), T, 1).astype(np.float32),
                      mode_B=np.zeros(B, np.float32))


def _fraction_changed(param_dtype: str) -> tuple[float, int, int]:
    cfg = tiny_qwen2_config(dtype="bfloat16", param_dtype=param_dtype, vocab_size=96)
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1))
    tx, schedule = make_optimizer(OptimConfig(learning_rate=1e-6, warmup_steps=0), 10)
    recipe = make_recipe(RLConfig(recipe="grpo"), group_size=4, max_new_tokens=T)
    with jax.set_mesh(mesh):
        policy, state = create_state(init_decoder(cfg, seed=0), tx, mesh)
        before = jax.device_get(state["params"])
        batch = _batch(cfg.vocab_size)
        step = jit_step(build_step(policy, tx, rl_loss_fn(recipe, chunk=8), micro_batches=1,
                                   schedule=schedule), state, mesh, batch)
        state, metrics = step(state, batch)
        after = jax.device_get(state["params"])
    np.testing.assert_allclose(float(metrics["train/lr"]), 1e-6, rtol=1e-6)
    for leaf in jax.tree.leaves(after):
        assert leaf.dtype == np.dtype(param_dtype)
    for leaf in jax.tree.leaves(jax.device_get(state["opt_state"])):
        if leaf.ndim:  # fp32 optimiser math whatever the params' dtype
            assert leaf.dtype == np.float32
    changed = sum(int(np.sum(np.asarray(a) != np.asarray(b)))
                  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
    total = sum(np.size(a) for a in jax.tree.leaves(before))
    return changed / total, changed, total


def test_fp32_master_weights_keep_small_updates():
    f32, n32, total = _fraction_changed("float32")
    b16, n16, _ = _fraction_changed("bfloat16")
    print(f"lr 1e-6, one AdamW step, bf16 compute: fp32 masters changed {n32}/{total} "
          f"({f32:.1%}), bf16 params changed {n16}/{total} ({b16:.1%})")
    assert f32 > 0.9
    assert b16 < 0.1 and n16 * 10 < n32


def test_optimizer_moments_are_fp32_for_bf16_params():
    cfg = tiny_qwen2_config(dtype="bfloat16", param_dtype="bfloat16")
    tx = optax.adamw(1e-6)
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1))
    _, state = abstract_state(cfg, tx, mesh)
    for leaf in jax.tree.leaves(state["opt_state"]):
        if leaf.ndim:
            assert leaf.dtype == np.float32
