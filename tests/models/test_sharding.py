"""8 fake CPU devices: sharded forward equals single-device forward; shardings follow the rules."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from toolrl_jax.config import ConfigError, MeshConfig
from toolrl_jax.models.decoder import init_decoder, init_sharded
from toolrl_jax.sharding import (
    ShardingError,
    batch_sharding,
    check_heads_fit_mesh,
    make_mesh,
    named_shardings,
    spec_for,
)
from toolrl_jax.testing.tiny import tiny_qwen2_config


def test_eight_fake_devices():
    assert jax.device_count() == 8


def test_sharded_forward_matches_single_device():
    cfg = tiny_qwen2_config()
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    single = init_decoder(cfg, seed=5)
    sharded = init_sharded(cfg, mesh, seed=5)
    tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, cfg.vocab_size)
    mask = np.ones((8, 16), np.int32)
    mask[3, 10:] = 0
    ref = np.asarray(single(tokens, mask))
    with jax.set_mesh(mesh):
        tok_s = jax.device_put(tokens, batch_sharding(mesh, 2))
        mask_s = jax.device_put(mask, batch_sharding(mesh, 2))
        graphdef, state = nnx.split(sharded)
        out = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, m))(state, tok_s, mask_s)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_weight_shardings_follow_rules():
    cfg = tiny_qwen2_config()
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    model = init_sharded(cfg, mesh)
    specs = named_shardings(nnx.state(model, nnx.Param), mesh)
    expected = {
        "embed_tokens": P("tensor", "fsdp"),
        "lm_head": P("fsdp", "tensor"),
        "layers.0.self_attn.q_proj": P("fsdp", "tensor"),
        "layers.0.self_attn.k_bias": P("tensor"),
        "layers.0.self_attn.o_proj": P("tensor", "fsdp"),
        "layers.1.mlp.down_proj": P("tensor", "fsdp"),
        "layers.1.input_layernorm.weight": P(None),
        "norm.weight": P(None),
    }
    for name, spec in expected.items():
        assert specs[name].spec == spec, (name, specs[name].spec)
    actual = nnx.state(model, nnx.Param)["layers"][0]["mlp"]["gate_proj"].get_value()
    assert actual.sharding.spec == P("fsdp", "tensor")
    assert len(actual.addressable_shards) == 8
    assert actual.addressable_shards[0].data.shape == (32, 48)


def test_non_divisible_dim_raises_not_replicates():
    mesh = make_mesh(MeshConfig(data=1, fsdp=8, tensor=1))
    with pytest.raises(ShardingError, match="embed' of size 60 is not divisible"):
        spec_for("layers.0.mlp.up_proj", ("embed", "mlp"), (60, 96), mesh)


def test_mesh_larger_than_devices():
    with pytest.raises(ConfigError, match="exceeds the 8 available devices"):
        make_mesh(MeshConfig(data=4, fsdp=4))


def test_tensor_parallel_is_checked_per_head():
    # 28 heads × 128 = 3584 columns divide by 8, but 28 heads do not: refused, by heads.
    qwen7b_like = dataclasses.replace(tiny_qwen2_config(), num_heads=28, num_kv_heads=4,
                                      hidden_size=3584, head_dim=128)
    with pytest.raises(ShardingError, match=r"num_heads=28 is not divisible by config.mesh.tensor=8"
                       r".*choose tensor from \[1, 2, 4\]"):
        check_heads_fit_mesh(qwen7b_like, make_mesh(MeshConfig(data=1, fsdp=1, tensor=8)))
    check_heads_fit_mesh(qwen7b_like, make_mesh(MeshConfig(data=2, fsdp=1, tensor=4)))
