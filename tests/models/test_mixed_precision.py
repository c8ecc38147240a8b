"""``load_hf(path, param_dtype, dtype)``: fp32 master weights with bf16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl_jax.models.decoder import init_decoder
from toolrl_jax.models.hf import load_hf, save_hf
from toolrl_jax.testing.tiny import tiny_qwen2_config


def _dot_input_dtypes(jaxpr) -> set[str]:
    """dtypes of every dot_general operand in ``jaxpr`` and its sub-jaxprs (scan, checkpoint…)."""
    out = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.update(str(v.aval.dtype) for v in eqn.invars)
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else [p]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out |= _dot_input_dtypes(inner)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    save_hf(init_decoder(tiny_qwen2_config(), seed=4), str(path))
    return str(path)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_fp32_params_bf16_activations(checkpoint, scan_layers):
    model = load_hf(checkpoint, "float32", "bfloat16", scan_layers=scan_layers, attention="xla")
    assert (model.cfg.param_dtype, model.cfg.dtype) == ("float32", "bfloat16")
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {str(p.dtype) for p in params} == {"float32"}
    tokens = jnp.arange(24, dtype=jnp.int32).reshape(2, 12) % model.cfg.vocab_size
    mask = jnp.asarray(np.arange(12)[None, :] < np.array([12, 7])[:, None])
    assert model.hidden(tokens, mask).dtype == jnp.bfloat16
    assert model(tokens, mask).dtype == jnp.float32  # logits are always fp32
    # Every matmul of the forward runs on bf16 operands (the norms cast their fp32 weight down
    # rather than promoting the activations back to fp32).
    jaxpr = jax.make_jaxpr(lambda t, m: model(t, m))(tokens, mask).jaxpr
    assert _dot_input_dtypes(jaxpr) == {"bfloat16"}
    # And the result is the fp32 model's up to bf16 rounding.
    ref = load_hf(checkpoint)(tokens, mask)
    np.testing.assert_allclose(np.asarray(model(tokens, mask))[0], np.asarray(ref)[0], atol=0.1)


def test_dtype_defaults_to_param_dtype(checkpoint):
    model = load_hf(checkpoint, "bfloat16")
    assert (model.cfg.param_dtype, model.cfg.dtype) == ("bfloat16", "bfloat16")
    assert {str(p.dtype) for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {"bfloat16"}
    assert load_hf(checkpoint).cfg.dtype == "float32"


def test_dtype_names_are_checked(checkpoint):
    with pytest.raises(TypeError, match=r"param_dtype must be a dtype name"):
        load_hf(checkpoint, param_dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"param_dtype='float16' is not supported"):
        load_hf(checkpoint, "float16")
    with pytest.raises(TypeError, match=r"dtype must be a dtype name.*not jnp.float32"):
        load_hf(checkpoint, dtype=jnp.bfloat16)
