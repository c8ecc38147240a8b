"""Checkpointer: sharded round trip and resharding, retention, crash safety, clear restore errors."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from toolrl_jax.config import MeshConfig
from toolrl_jax.models.decoder import Decoder, init_sharded
from toolrl_jax.sharding import make_mesh, state_shardings
from toolrl_jax.testing.tiny import tiny_qwen2_config
from toolrl_jax.train.checkpoint import (
    Checkpointer,
    CheckpointRestoreError,
    abstract_of,
    from_pure,
    to_pure,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTRAS = {
    "phase": "rl",
    "counters": {"step": 10, "rl_step": 4, "tokens_seen": 123456},
    "data_iterator": {"grain": b"\x00\xffopaque-iterator-state\n", "epoch": 1},
    "config": {"lr": 1e-3, "recipe": "tepo_dense", "mesh": (2, 4, 1), "notes": None, "ok": True},
}


def _bits(x) -> np.ndarray:
    """Host copy for bitwise comparison; typed PRNG keys compare through their key data."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _assert_bitwise_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(_bits(x), _bits(y))


@pytest.fixture(scope="module")
def train_state():
    """Params of the tiny Qwen2 born sharded on (data=2, fsdp=4), adamw state after one update."""
    cfg = tiny_qwen2_config()
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    model = init_sharded(cfg, mesh, seed=3)
    param_state = nnx.state(model, nnx.Param)
    params = to_pure(param_state)
    opt = optax.adamw(1e-3)

    @jax.jit
    def one_update(params):
        opt_state = opt.init(params)
        grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = one_update(params)  # non-zero mu/nu and count=1: a swap would show
    replicated = NamedSharding(mesh, P())
    state = {
        "params": params,
        "opt_state": opt_state,
        "beta_long": jax.device_put(jnp.float32(0.0123), replicated),
        "rng": jax.device_put(jax.random.key(42), replicated),  # typed key: orbax rewraps it
        "rng_data": jax.device_put(jax.random.key_data(jax.random.key(7)), replicated),  # raw data
    }
    return {"cfg": cfg, "mesh": mesh, "state": state, "opt": opt, "param_state": param_state}


def _small_state(value: float):
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    w = jax.device_put(jnp.full((8, 4), value, jnp.float32), NamedSharding(mesh, P(("data", "fsdp"))))
    return {"w": w, "n": jax.device_put(jnp.int32(value), NamedSharding(mesh, P()))}


def test_round_trip_bitwise_with_target_shardings(train_state, tmp_path):
    state = train_state["state"]
    with Checkpointer(tmp_path / "checkpoints", keep=2) as ckpt:
        assert ckpt.save(10, state, EXTRAS)
        target = abstract_of(state)
        restored, extras = ckpt.restore(None, target)

    _assert_bitwise_equal(restored, state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target), strict=True):
        assert got.sharding == want.sharding
    # The fsdp split survived: not everything came back replicated.
    assert restored["params"]["embed_tokens"].sharding.spec == P(None, "fsdp")
    assert restored["rng"].dtype == state["rng"].dtype  # a typed key again, same impl
    assert extras["data_iterator"]["grain"] == EXTRAS["data_iterator"]["grain"]  # bytes come back
    assert extras["config"]["mesh"] == [2, 4, 1]  # tuples come back as lists (JSON)
    assert {k: v for k, v in extras.items() if k != "config"} == {
        k: v for k, v in EXTRAS.items() if k != "config"
    }

    # Back into an nnx State / model: from_pure fills a template without touching it.
    template = train_state["param_state"]
    before = [np.asarray(x) for x in jax.tree.leaves(template)]
    new_state = from_pure(template, restored["params"])
    _assert_bitwise_equal(to_pure(new_state), state["params"])
    after = jax.tree.leaves(template)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("mesh_cfg", [MeshConfig(data=8, fsdp=1), MeshConfig(data=1, fsdp=2, tensor=4)])
def test_restore_reshards_onto_another_mesh(train_state, tmp_path, mesh_cfg):
    state = train_state["state"]
    with Checkpointer(tmp_path / "checkpoints", keep=1) as ckpt:
        ckpt.save(5, state, EXTRAS)

        # The target is built the way a trainer builds fresh state: eval_shape -> rules -> shardings.
        mesh2 = make_mesh(mesh_cfg)
        replicated = NamedSharding(mesh2, P())
        abstract_model = nnx.eval_shape(lambda: Decoder(train_state["cfg"], nnx.Rngs(0)))
        abstract_params = nnx.state(abstract_model, nnx.Param)
        param_shardings = to_pure(state_shardings(abstract_params, mesh2))
        target_params = abstract_of(to_pure(abstract_params), param_shardings)
        # Optimizer moments shard like their params; the step count is replicated.
        target_opt = optax.tree_map_params(
            train_state["opt"],
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            jax.eval_shape(train_state["opt"].init, target_params),
            param_shardings,
            transform_non_params=lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
        )
        target = {
            "params": target_params,
            "opt_state": target_opt,
            "beta_long": jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated),
            "rng": jax.ShapeDtypeStruct((), state["rng"].dtype, sharding=replicated),
            "rng_data": jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
        }
        restored, _ = ckpt.restore(5, target)

    _assert_bitwise_equal(restored, state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target), strict=True):
        assert got.sharding == want.sharding
    assert restored["params"]["embed_tokens"].sharding.mesh.shape == mesh2.shape
    if mesh_cfg.tensor == 4:  # a genuinely different split, not just "replicate everything"
        assert restored["params"]["embed_tokens"].sharding.spec == P("tensor", "fsdp")
        assert restored["opt_state"][0].mu["lm_head"].sharding.spec == P("fsdp", "tensor")


@pytest.mark.parametrize("async_save", [True, False])
def test_keep_n_interval_force_and_latest_step(tmp_path, async_save):
    directory = tmp_path / "checkpoints"
    with Checkpointer(directory, keep=2, save_interval_steps=2, async_save=async_save) as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(CheckpointRestoreError, match="no complete checkpoint"):
            ckpt.restore(None, abstract_of(_small_state(0)))
        saved = [ckpt.save(step, _small_state(step), {"step": step}) for step in range(1, 8)]
        # Only multiples of the interval (no "initial save" of step 1).
        assert saved == [False, True, False, True, False, True, False]
        assert ckpt.save(7, _small_state(7), {"step": 7}, force=True)  # the last step of a run
        assert not ckpt.save(7, _small_state(7), {"step": 7}, force=True)  # already saved: no-op
        assert ckpt.all_steps() == [6, 7]
        assert ckpt.latest_step() == 7
        assert sorted(os.listdir(directory)) == ["6", "7"]

    with Checkpointer(directory, keep=2, save_interval_steps=2) as reopened:  # a fresh process
        assert reopened.latest_step() == 7
        state, extras = reopened.restore(None, abstract_of(_small_state(0)))
        assert extras == {"step": 7}
        np.testing.assert_array_equal(np.asarray(state["w"]), np.full((8, 4), 7.0))
        old, _ = reopened.restore(6, abstract_of(_small_state(0)))
        assert int(old["n"]) == 6
        with pytest.raises(CheckpointRestoreError, match=r"step 2 not found \(complete steps: \[6, 7\]\)"):
            reopened.restore(2, abstract_of(_small_state(0)))


def test_async_save_survives_donated_buffers(tmp_path):
    state = _small_state(3.5)
    want = {k: np.asarray(v) for k, v in state.items()}
    with Checkpointer(tmp_path / "checkpoints", keep=1) as ckpt:
        target = abstract_of(state)
        assert ckpt.save(1, state)
        for leaf in jax.tree.leaves(state):
            leaf.delete()  # what donation to the next train step does to these buffers
        restored, extras = ckpt.restore(1, target)
    assert extras == {}
    for k, v in want.items():
        np.testing.assert_array_equal(np.asarray(restored[k]), v)


def test_leftover_tmp_directory_is_ignored_and_cleaned(tmp_path):
    directory = tmp_path / "checkpoints"
    with Checkpointer(directory, keep=3) as ckpt:
        ckpt.save(3, _small_state(3), {"step": 3})
    # What an unfinished save of step 5 looks like: orbax's tmp name, even with complete contents.
    shutil.copytree(directory / "3", directory / "5.orbax-checkpoint-tmp")
    with Checkpointer(directory, keep=3) as ckpt:
        assert ckpt.latest_step() == 3
        state, extras = ckpt.restore(None, abstract_of(_small_state(0)))
        assert extras == {"step": 3} and int(state["n"]) == 3
        assert ckpt.save(5, _small_state(5), {"step": 5})  # no collision with the leftover
        assert ckpt.latest_step() == 5
    assert sorted(os.listdir(directory)) == ["3", "5"]


_CHILD = textwrap.dedent("""
    import asyncio, os, sys
    import jax, jax.numpy as jnp
    from orbax.checkpoint._src.path import atomicity
    from toolrl_jax.train.checkpoint import Checkpointer

    directory, marker = sys.argv[1], sys.argv[2]
    ckpt = Checkpointer(directory, keep=3)
    ckpt.save(1, {"w": jnp.full((64, 64), 1.0)}, {"step": 1})
    ckpt.wait()

    item_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def hang_before_step_commit(self):
        # Items (state/, extras/) are finalized inside the step's tmp directory first; hang at the
        # step's own commit (the rename to "2"), when every byte of the step is already on disk.
        if os.path.dirname(str(self.get())) != os.path.abspath(directory):
            return await item_finalize(self)
        with open(marker, "w") as f:
            f.write(str(self.get()))
        await asyncio.sleep(3600)

    atomicity.AtomicRenameTemporaryPath.finalize = hang_before_step_commit
    ckpt.save(2, {"w": jnp.full((64, 64), 2.0)}, {"step": 2})
    ckpt.wait()  # never returns: the parent SIGKILLs us while the save is in flight
""")


def test_sigkill_mid_save_leaves_last_complete_step(tmp_path):
    directory, marker = tmp_path / "checkpoints", tmp_path / "about_to_commit"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(directory), str(marker)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("child never reached the commit of step 2")
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()

    # The crash happened mid-save: step 2 exists only under its tmp name, with both items in it.
    assert sorted(os.listdir(directory)) == ["1", "2.orbax-checkpoint-tmp"]
    assert {"state", "extras"} <= set(os.listdir(directory / "2.orbax-checkpoint-tmp"))

    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    target = {"w": jax.ShapeDtypeStruct((64, 64), jnp.float32, sharding=NamedSharding(mesh, P("fsdp")))}
    with Checkpointer(directory, keep=3) as ckpt:
        assert ckpt.latest_step() == 1
        state, extras = ckpt.restore(None, target)
        assert extras == {"step": 1}
        np.testing.assert_array_equal(np.asarray(state["w"]), np.ones((64, 64)))
        assert state["w"].sharding == target["w"].sharding
        # The resumed run saves step 2 again over the leftover.
        assert ckpt.save(2, {"w": jnp.full((64, 64), 2.0)}, {"step": 2})
        assert ckpt.latest_step() == 2
    assert sorted(os.listdir(directory)) == ["1", "2"]


def _one_line_error(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_mismatched_target_raises_one_line_error_naming_the_step(tmp_path):
    directory = tmp_path / "checkpoints"
    with Checkpointer(directory, keep=2) as ckpt:
        ckpt.save(4, _small_state(4), {"step": 4})
        step_dir = os.path.join(os.path.abspath(directory), "4")

        bad_shape = abstract_of(_small_state(0))
        bad_shape["w"] = jax.ShapeDtypeStruct((16, 4), jnp.float32, sharding=bad_shape["w"].sharding)
        with pytest.raises(CheckpointRestoreError) as e:
            ckpt.restore(4, bad_shape)
        _one_line_error(e, str(step_dir), "step 4",
                        "w has shape (8, 4) in the checkpoint but (16, 4) in the target")

        bad_dtype = abstract_of(_small_state(0))
        bad_dtype["w"] = jax.ShapeDtypeStruct((8, 4), jnp.bfloat16, sharding=bad_dtype["w"].sharding)
        with pytest.raises(CheckpointRestoreError) as e:
            ckpt.restore(None, bad_dtype)
        _one_line_error(e, "step 4", "w has dtype float32 in the checkpoint but bfloat16")

        renamed = abstract_of(_small_state(0))
        renamed["v"] = renamed.pop("w")
        with pytest.raises(CheckpointRestoreError) as e:
            ckpt.restore(4, renamed)
        _one_line_error(e, "v is in the target but not in the checkpoint",
                        "w is in the checkpoint but not in the target")


def test_corrupt_or_partial_checkpoint_raises_restore_error(tmp_path):
    directory = tmp_path / "checkpoints"
    with Checkpointer(directory, keep=3) as ckpt:
        ckpt.save(1, _small_state(1), {"step": 1})
        ckpt.save(2, _small_state(2), {"step": 2})
        ckpt.save(3, _small_state(3), {"step": 3})
    shutil.rmtree(directory / "3" / "extras")  # a partial copy of step 3
    for name in os.listdir(directory / "2" / "state"):  # step 2's array data is gone
        if name not in ("_METADATA", "_CHECKPOINT_METADATA"):
            path = directory / "2" / "state" / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    with Checkpointer(directory, keep=3) as ckpt:
        assert ckpt.latest_step() == 2  # step 3 lacks an item: never offered for restore
        with pytest.raises(CheckpointRestoreError) as e:
            ckpt.restore(3, abstract_of(_small_state(0)))
        _one_line_error(e, "step 3", "item 'extras' is missing")
        with pytest.raises(CheckpointRestoreError) as e:
            ckpt.restore(2, abstract_of(_small_state(0)))
        _one_line_error(e, os.path.join(os.path.abspath(directory), "2"), "step 2")
        assert e.value.__cause__ is not None  # orbax's own exception stays reachable
        state, _ = ckpt.restore(1, abstract_of(_small_state(0)))
        assert int(state["n"]) == 1


def test_save_rejects_what_it_cannot_restore_faithfully(train_state, tmp_path):
    with Checkpointer(tmp_path / "checkpoints", keep=1) as ckpt:
        with pytest.raises(TypeError, match="nnx State.*to_pure"):
            ckpt.save(1, {"params": train_state["param_state"]})
        with pytest.raises(TypeError, match=r"beta is a float, not a jax.Array"):
            ckpt.save(1, {"beta": 0.5})
        with pytest.raises(TypeError, match=r"extras.iterator is a set"):
            ckpt.save(1, _small_state(1), {"iterator": {1, 2}})
        with pytest.raises(TypeError, match="non-str key 3"):
            ckpt.save(1, _small_state(1), {"by_step": {3: "x"}})
        with pytest.raises(ValueError, match="no sharding"):
            ckpt.restore(None, {"w": jax.ShapeDtypeStruct((8, 4), jnp.float32)})
        assert ckpt.all_steps() == []  # nothing half-written by the rejected calls
