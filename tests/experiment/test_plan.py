"""mode=plan: the planner's numbers are XLA's for the real train step; fit verdicts; simulation."""

import dataclasses
import os

import jax
import numpy as np

from toolrl_jax import config as config_lib
from toolrl_jax import main as main_lib
from toolrl_jax.experiment.plan import StepMemory, make_plan, step_shape
from toolrl_jax.models.decoder import init_sharded
from toolrl_jax.rl.recipes import make_recipe
from toolrl_jax.sharding import make_mesh
from toolrl_jax.train.batch import TrainBatch
from toolrl_jax.train.state import create_state, make_optimizer
from toolrl_jax.train.steps import build_step, jit_step, rl_loss_fn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny.py")
SMALL = {"rollout.prompts_per_step": 4, "rollout.group_size": 4, "rollout.max_prompt_len": 32,
         "rollout.max_new_tokens": 32, "rollout.max_cache_len": 64, "rollout.length_bucket": 32,
         "train.micro_batch_size": 8, "mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 2,
         "rl.recipe": "tao_rl"}


def _cfg(**extra):
    return config_lib.load(TINY, {**SMALL, **extra})


def _device0_bytes(tree) -> int:
    dev = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
               if s.device == dev)


def test_plan_equals_the_compiled_real_step():
    cfg = _cfg()
    mesh = make_mesh(cfg.mesh)
    plan = make_plan(cfg, mesh)
    assert plan.compiled_layers == (cfg.model.num_layers,) and not plan.extrapolated

    # The real thing: allocated weights, the trainer's optimizer / recipe / step, a real batch.
    rows, micro, seq = step_shape(cfg)
    assert (rows, micro, seq) == (16, 2, 64)
    tx, schedule = make_optimizer(cfg.optim, cfg.train.steps)
    recipe = make_recipe(cfg.rl, group_size=cfg.rollout.group_size,
                         max_new_tokens=cfg.rollout.max_new_tokens)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.model.vocab_size, (rows, seq)).astype(np.int32)
    ones = np.ones((rows, seq), np.float32)
    batch = TrainBatch(tokens_BT=tokens, attn_mask_BT=ones.astype(np.int32), loss_mask_BT=ones,
                       old_logp_BT=-ones, advantages_BT=ones, mode_B=np.zeros(rows, np.float32))
    with jax.set_mesh(mesh):
        policy, state = create_state(init_sharded(cfg.model, mesh, cfg.train.seed), tx, mesh,
                                     recipe.init_beta_long)
        step = jit_step(build_step(policy, tx, rl_loss_fn(recipe, cfg.train.logit_chunk),
                                   micro_batches=micro, update_beta=recipe.update_beta,
                                   schedule=schedule), state, mesh, batch)
        jitted = getattr(step, "jitted", step)
        real = StepMemory.of(jitted.lower(state, batch).compile())

    assert plan.step == real  # argument, output, alias, temp and code bytes, per device
    assert plan.param_bytes_per_device == _device0_bytes(state["params"])
    assert plan.optimizer_bytes_per_device == _device0_bytes(state["opt_state"])
    assert plan.param_bytes_per_device * 8 < sum(x.nbytes for x in jax.tree.leaves(
        state["params"])) * 2  # sharded: most weights are split 8 or 4 ways
    batch_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(batch)) // 4  # rows / fsdp
    assert plan.batch_bytes_per_device == batch_bytes
    # Arguments = the sharded state + batch, up to a few 4-byte scalars (step, beta_long, the
    # optimizer's counts; jit prunes scalars a recipe's step never reads).
    sharded = (plan.param_bytes_per_device + plan.optimizer_bytes_per_device
               + plan.batch_bytes_per_device)
    assert abs(real.argument - sharded) <= 32
    assert plan.total_bytes_per_device == real.argument + real.output - real.alias + real.temp


def test_plan_prints_fit_verdicts(capsys):
    args = ["--config", TINY] + [f"--config.{k}={v}" for k, v in SMALL.items()]
    assert main_lib.run(args + ["--config.plan.hbm_gib=0.001"]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out
    assert "activations+temp" in out and "compiled all 2 layers" in out
    assert main_lib.run(args + ["--config.plan.hbm_gib=16"]) == 0
    out = capsys.readouterr().out
    assert "HBM per device 16.00 GiB: fits" in out


def test_plan_warns_about_bf16_master_weights(capsys):
    args = ["--config", TINY] + [f"--config.{k}={v}" for k, v in SMALL.items()]
    assert main_lib.run(args + ["--config.model.param_dtype=bfloat16",
                                "--config.model.dtype=bfloat16"]) == 0
    assert "WARNING: master weights are bf16" in capsys.readouterr().out
    assert main_lib.run(args + ["--config.model.dtype=bfloat16"]) == 0
    assert "WARNING" not in capsys.readouterr().out  # fp32 masters, bf16 compute: as intended


def test_sliced_plan_extrapolates_per_layer():
    cfg = _cfg(**{"model.num_layers": 4, "plan.slice_layers": 1})
    mesh = make_mesh(cfg.mesh)
    sliced = make_plan(cfg, mesh)
    assert sliced.compiled_layers == (1, 2) and sliced.extrapolated
    full = make_plan(dataclasses.replace(cfg, plan=dataclasses.replace(cfg.plan, slice_layers=0)),
                     mesh)
    # Every layer adds the same arguments (params, moments): exact; temporaries: close.
    assert sliced.step.argument == full.step.argument
    assert sliced.param_bytes_per_device == full.param_bytes_per_device
    np.testing.assert_allclose(sliced.step.temp, full.step.temp, rtol=0.25)


def test_plan_simulates_more_devices_in_a_fresh_process(capfd):
    # The test process has 8 CPU devices; 16 are simulated by re-running in a child process.
    args = ["--config", TINY] + [f"--config.{k}={v}" for k, v in SMALL.items()]
    assert main_lib.run(args + ["--config.plan.devices=16", "--config.mesh.fsdp=8"]) == 0
    out = capfd.readouterr().out
    assert "mesh: data=1, fsdp=8, tensor=2  (16 cpu devices)" in out


def test_plan_compiles_the_rollout_on_the_real_engine_layout():
    # fsdp=4 x tensor=2: 16 slots over 4 row shards, KV heads over tensor; the planned cache is
    # exactly the shard the engine allocates on device 0, and the compiled programs hold it.
    from flax import nnx

    from toolrl_jax.rollout.factory import build_engine
    from toolrl_jax.testing.fake_tools import EndTokenSyntax, echo_executor

    cfg = _cfg()
    mesh = make_mesh(cfg.mesh)
    r = make_plan(cfg, mesh).rollout
    m = cfg.model
    assert r.slots == 16 and r.cache_len == 64
    hd = m.hidden_size // m.num_heads
    expected = (2 * m.num_layers * (16 // 4) * (m.num_kv_heads // 2) * hd * 64 * 4  # k, v fp32
                + (16 // 4) * 4)  # int32 lengths
    assert r.kv_cache_bytes == expected
    graphdef, params = nnx.split(init_sharded(m, mesh, cfg.train.seed))
    engine = build_engine(lambda p: nnx.merge(graphdef, p), cfg.rollout, _IdTok(),
                          EndTokenSyntax(["x"]), echo_executor, rows=16, greedy=False,
                          eos_ids=[0], stop_sequences=[[1]], mesh=mesh)
    cache, _ = engine.compiled.init_cache(params)
    assert _device0_bytes(cache) == expected
    assert r.decode.argument >= expected and r.append.argument >= expected
    assert r.peak >= r.decode.peak > expected


class _IdTok:
    pad_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [int(t) for t in text.split()]

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))
