"""``Decoder.remat`` (``train.remat``): per-layer ``jax.checkpoint`` changes memory, not gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl_jax.models.decoder import Decoder, init_decoder
from toolrl_jax.testing.tiny import tiny_qwen2_config


def _grads(model, tokens, mask):
    graphdef, state = nnx.split(model)

    def loss(s):
        return jnp.mean(nnx.merge(graphdef, s)(tokens, mask))

    return jax.jit(jax.value_and_grad(loss))(state)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_gradients_identical_with_and_without_remat(scan_layers):
    cfg = tiny_qwen2_config(num_layers=3, scan_layers=scan_layers)
    tokens = jax.random.randint(jax.random.key(0), (3, 32), 0, cfg.vocab_size)
    mask = (np.arange(32)[None, :] < np.array([32, 20, 9])[:, None]).astype(np.int32)
    base_loss, base = _grads(init_decoder(cfg, seed=1), tokens, mask)
    for remat in ("full", "save_dots"):
        model = init_decoder(cfg, seed=1, remat=remat)
        assert model.remat == remat
        loss, grads = _grads(model, tokens, mask)
        assert float(loss) == pytest.approx(float(base_loss), abs=1e-6)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)


def test_remat_set_after_construction_reaches_the_graphdef():
    """The trainer sets ``model.remat = cfg.train.remat`` before nnx.split: modules rebuilt from
    the graphdef carry it, and ``hidden(remat=...)`` overrides it per call."""
    model = init_decoder(tiny_qwen2_config())
    model.remat = "full"
    graphdef, state = nnx.split(model)
    assert nnx.merge(graphdef, state).remat == "full"
    tokens = jnp.zeros((1, 8), jnp.int32)
    jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s).hidden(tokens))(state))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    plain = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s).hidden(tokens, remat="none"))(state))
    assert "checkpoint" not in plain and "remat" not in plain
    with pytest.raises(ValueError, match="remat='some'"):
        init_decoder(tiny_qwen2_config(), remat="some")


def _temp_bytes(cfg, remat: str, batch: int = 4, seq: int = 256) -> int:
    """Compiled temp memory of value_and_grad(mean logit) on abstract shapes (nothing allocated)."""
    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0), remat=remat))
    graphdef, state = nnx.split(abstract)

    def f(state, tokens, mask):
        return jax.value_and_grad(lambda s: jnp.mean(nnx.merge(graphdef, s)(tokens, mask)))(state)

    tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    return jax.jit(f).lower(state, tokens, tokens).compile().memory_analysis().temp_size_in_bytes


def test_full_remat_lowers_compiled_temp_memory():
    """4 layers, T = 256: activations dominate (small vocab). Scanned layers, where the saved
    residuals are exactly the per-layer carries; (without scan, XLA:CPU schedules the
    recomputation early and keeps most of the activations alive anyway: printed, not asserted)."""
    cfg = tiny_qwen2_config(num_layers=4, hidden_size=128, intermediate_size=512, num_heads=8,
                            num_kv_heads=2, vocab_size=128, max_position=256, scan_layers=True)
    sizes = {remat: _temp_bytes(cfg, remat) for remat in ("none", "full", "save_dots")}
    flat = dataclasses.replace(cfg, scan_layers=False)
    unscanned = {remat: _temp_bytes(flat, remat) for remat in ("none", "full")}
    print({k: f"{v / 2**20:.1f} MiB" for k, v in sizes.items()},
          "unscanned:", {k: f"{v / 2**20:.1f} MiB" for k, v in unscanned.items()})
    assert sizes["full"] < 0.5 * sizes["none"], sizes
    assert sizes["full"] <= sizes["save_dots"] < sizes["none"], sizes
