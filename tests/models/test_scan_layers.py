"""``model.scan_layers``: stacked layer params under ``lax.scan`` compute what per-layer params do;
HF load / save map the stacked leaves to and from per-layer HF tensors (plain and sharded)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from toolrl_jax.config import MeshConfig
from toolrl_jax.models.decoder import KVCache, init_decoder, init_sharded
from toolrl_jax.models.hf import load_hf, save_hf
from toolrl_jax.sharding import batch_sharding, make_mesh, named_shardings
from toolrl_jax.testing.tiny import tiny_llama_config, tiny_qwen2_config

CONFIGS = {"qwen2": tiny_qwen2_config, "llama": tiny_llama_config}


def _batch(vocab, b=3, t=24, seed=0):
    tokens = jax.random.randint(jax.random.key(seed), (b, t), 0, vocab, dtype=jnp.int32)
    lengths = np.array([t, 11, 17, 5])[:b]
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
    return tokens, jnp.asarray(mask)


def _write_checkpoint(path, cfg):
    """An HF checkpoint written by our own exporter from a random unscanned model (no torch)."""
    save_hf(init_decoder(cfg, seed=7), str(path))


def test_stacked_params_have_a_leading_layers_axis():
    cfg = tiny_qwen2_config(num_layers=3, scan_layers=True)
    model = init_decoder(cfg)
    params = nnx.state(model, nnx.Param)
    up = params["layers"]["mlp"]["up_proj"]
    assert up.get_value().shape == (3, cfg.hidden_size, cfg.intermediate_size)
    assert up.axes == ("layers", "embed", "mlp")
    # Same seed, same weights: slice i of the stack is layer i of the unscanned model.
    flat = init_decoder(dataclasses.replace(cfg, scan_layers=False))
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(up.get_value()[i]),
                                      np.asarray(flat.layers[i].mlp.up_proj.get_value()))


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_scanned_equals_unscanned_logits_from_one_hf_checkpoint(tmp_path, arch):
    cfg = CONFIGS[arch](num_layers=3)
    _write_checkpoint(tmp_path, cfg)
    flat = load_hf(str(tmp_path), scan_layers=False)
    scanned = load_hf(str(tmp_path), scan_layers=True)
    assert scanned.cfg.scan_layers and not flat.cfg.scan_layers
    tokens, mask = _batch(cfg.vocab_size)
    a = np.asarray(jax.jit(lambda t, m: flat(t, m))(tokens, mask))
    b = np.asarray(jax.jit(lambda t, m: scanned(t, m))(tokens, mask))
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_scanned_cached_decode_matches_full_forward():
    """extend_hidden loops over static slices of the stacked params."""
    cfg = tiny_qwen2_config(num_layers=3, scan_layers=True)
    model = init_decoder(cfg, seed=3)
    tokens, _ = _batch(cfg.vocab_size)
    full = np.asarray(model(tokens))
    lens = np.array([5, 9, 2])
    cache = KVCache.init(cfg, 3, 32)
    logits, cache = model.extend(tokens[:, :12], jnp.asarray(lens), cache)
    for b, n in enumerate(lens):
        np.testing.assert_allclose(np.asarray(logits)[b, :n], full[b, :n], atol=1e-5, rtol=0)
    step, cache = model.extend(jnp.take_along_axis(tokens, jnp.asarray(lens)[:, None], axis=1),
                               jnp.ones(3, jnp.int32), cache)
    for b, n in enumerate(lens):
        np.testing.assert_allclose(np.asarray(step)[b, 0], full[b, n], atol=1e-5, rtol=0)


def test_save_hf_of_scanned_model_is_byte_identical(tmp_path):
    cfg = tiny_qwen2_config(num_layers=3)
    _write_checkpoint(tmp_path / "src", cfg)
    save_hf(load_hf(str(tmp_path / "src"), scan_layers=False), str(tmp_path / "flat"))
    save_hf(load_hf(str(tmp_path / "src"), scan_layers=True), str(tmp_path / "scanned"))
    for name in ("model.safetensors", "config.json"):
        src = (tmp_path / "src" / name).read_bytes()
        assert (tmp_path / "flat" / name).read_bytes() == src
        assert (tmp_path / "scanned" / name).read_bytes() == src


def test_sharded_scanned_load_and_export(tmp_path):
    """load_hf with a mesh builds every stacked leaf in its sharding (layers replicated, the rest
    by the rules); save_hf gathers one layer slice at a time and writes the same file."""
    cfg = tiny_qwen2_config(num_layers=3)
    _write_checkpoint(tmp_path / "src", cfg)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    with jax.set_mesh(mesh):
        model = load_hf(str(tmp_path / "src"), mesh=mesh, scan_layers=True)
    specs = named_shardings(nnx.state(model, nnx.Param), mesh)
    assert specs["layers.mlp.gate_proj"].spec == P(None, "fsdp", "tensor")
    assert specs["layers.self_attn.k_bias"].spec == P(None, "tensor")
    gate = model.layers.mlp.gate_proj.get_value()
    assert gate.addressable_shards[0].data.shape == (3, 32, 48)
    tokens, mask = _batch(cfg.vocab_size, b=4)
    ref = np.asarray(load_hf(str(tmp_path / "src"))(tokens, mask))
    with jax.set_mesh(mesh):
        graphdef, state = nnx.split(model)
        out = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, m))(
            state, jax.device_put(tokens, batch_sharding(mesh, 2)),
            jax.device_put(mask, batch_sharding(mesh, 2)))
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)
    save_hf(model, str(tmp_path / "out"))
    assert ((tmp_path / "out" / "model.safetensors").read_bytes()
            == (tmp_path / "src" / "model.safetensors").read_bytes())


def test_init_sharded_scanned_matches_unscanned():
    cfg = tiny_qwen2_config(scan_layers=True)
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    scanned = init_sharded(cfg, mesh, seed=5)
    flat = init_decoder(dataclasses.replace(cfg, scan_layers=False), seed=5)
    tokens, mask = _batch(cfg.vocab_size, b=2)
    np.testing.assert_allclose(np.asarray(scanned(tokens, mask)), np.asarray(flat(tokens, mask)),
                               atol=1e-6, rtol=0)
