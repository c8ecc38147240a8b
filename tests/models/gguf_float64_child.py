"""Child process of ``tests/models/test_gguf.py``: GGUF files' logits in float64, from our import
and from transformers' own GGUF import (PyTorch), on the tokens the test passes.

``python tests/models/gguf_float64_child.py IO.npz FILE.gguf …`` reads ``tokens`` and ``mask``
from ``IO.npz`` and adds, for the i-th file, float64 logits ``[B, T, V]``: ``ours_i``,
``transformers_i`` (its model cast with ``.double()``, run as is) and ``exact_i`` (the same model
with the two steps it still runs in fp32 lifted to float64, see :func:`lift_fp32_steps`).
It must run with ``JAX_ENABLE_X64=1``: float64 needs x64, which the test process cannot turn on
(its JAX is configured by ``tests/conftest.py``, and x64 would change every other test's dtypes).
"""

from __future__ import annotations

import functools
import os
import sys
import types

import numpy as np


def _rms_norm_64(self, hidden_states):
    """transformers' RMSNorm forward without its ``.to(torch.float32)``."""
    import torch

    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rope_64(self, x, position_ids, *, inv_freq):
    """transformers' default RoPE forward with angles in float64 instead of ``.float()``."""
    import torch

    freqs = position_ids[..., None].to(inv_freq.dtype) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def lift_fp32_steps(model) -> None:
    """transformers' float64 model still runs two steps in fp32: every RMSNorm casts its input
    to fp32, and RoPE angles are fp32 products of fp32 inverse frequencies. Both are replaced by
    the same formulas in float64, so what differs from our float64 logits after this is the two
    implementations' own arithmetic, not a precision transformers chose."""
    import torch

    norms = ropes = 0
    for module in model.modules():
        kind = type(module).__name__
        if kind.endswith("RMSNorm"):
            module.forward = types.MethodType(_rms_norm_64, module)
            norms += 1
        elif kind.endswith("RotaryEmbedding"):
            if module.rope_type != "default" or module.attention_scaling != 1.0:
                sys.exit(f"{kind}: only default RoPE is lifted to float64, got "
                         f"{module.rope_type!r} (scaling {module.attention_scaling})")
            theta = model.config.rope_parameters["rope_theta"]
            dim = 2 * module.inv_freq.shape[0]
            inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
            module.forward = types.MethodType(functools.partial(_rope_64, inv_freq=inv_freq),
                                              module)
            ropes += 1
    if norms == 0 or ropes == 0:  # transformers renamed them: the lift would silently do nothing
        sys.exit(f"found {norms} RMSNorm and {ropes} RotaryEmbedding modules to lift")


def main(io_path: str, *gguf_paths: str) -> None:
    import jax

    if not jax.config.read("jax_enable_x64"):
        sys.exit("run with JAX_ENABLE_X64=1: float64 logits need x64")
    jax.config.update("jax_numpy_rank_promotion", "raise")  # as in the test process
    import jax.numpy as jnp
    import torch
    import transformers

    from toolrl_jax.models.hf import load_hf

    data = dict(np.load(io_path))
    tokens, mask = data["tokens"], data["mask"]

    def hf_logits(model):
        with torch.no_grad():
            out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
        if out.dtype != np.float64:
            sys.exit(f"transformers' float64 model returned {out.dtype} logits")
        return out

    for i, path in enumerate(gguf_paths):
        ours = load_hf(path, "float64")  # dequantized in fp32 (as GGUF defines), cast exactly
        got = np.asarray(ours(jnp.asarray(tokens), jnp.asarray(mask)))
        if got.dtype != np.float64:
            sys.exit(f"our float64 model returned {got.dtype} logits")
        data[f"ours_{i}"] = got
        del ours
        # transformers dequantizes to fp32 numpy too; .double() casts every weight exactly.
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
        hf = hf.double().eval()
        data[f"transformers_{i}"] = hf_logits(hf)
        lift_fp32_steps(hf)
        data[f"exact_{i}"] = hf_logits(hf)
    np.savez(io_path, **data)


if __name__ == "__main__":
    main(*sys.argv[1:])
