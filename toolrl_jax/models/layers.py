"""Building blocks of the Qwen2/Llama decoder: RMSNorm, RoPE (default + Llama-3 scaling), attention math.

Parameters carry a ``axes`` metadata tuple of *logical* axis names; ``toolrl_jax.sharding`` maps
those to mesh axes. Glossary: embed (D), vocab (V), q_heads (H*hd), kv_heads (KV*hd), mlp (F),
layers (the leading axis of stacked layer params when ``model.scan_layers``).

Attention has two entry points: :func:`grouped_attention` (plain XLA, any boolean mask, either KV
layout: the CPU reference and the cached decode path) and :func:`causal_attention` (causal
self-attention over right-padded rows, dispatched to a fused kernel: cuDNN flash attention on GPU,
Pallas splash attention on TPU, XLA's ``jax.nn.dot_product_attention`` elsewhere).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toolrl_jax.config import ModelConfig, RopeScalingConfig
from toolrl_jax.sharding import mesh_axes_of

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def require_x64(cfg: ModelConfig) -> None:
    """float64 params / compute need ``jax_enable_x64``: without it JAX silently makes every
    float64 array float32, and a "float64" model would quietly be an fp32 one."""
    if "float64" in (cfg.param_dtype, cfg.dtype) and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"model param_dtype={cfg.param_dtype!r} / dtype={cfg.dtype!r} needs float64, which "
            "JAX disables by default: set JAX_ENABLE_X64=1 in the environment, or call "
            "jax.config.update('jax_enable_x64', True) before creating any array")


def at_least_fp32(dtype):
    """The dtype numerically sensitive steps (norms, RoPE, softmax, logits) run in: fp32 for
    bf16 / fp32 activations, float64 for a float64 model (never narrower than the input)."""
    return jnp.promote_types(dtype, jnp.float32)


def param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...], dtype, std: float):
    """A normally initialised parameter annotated with logical axes."""
    value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value.astype(dtype), axes=axes)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((dim,), dtype), axes=("norm",))
        self.eps = eps

    def __call__(self, x):
        # Normalise in fp32 as HF does, then cast back before scaling (matters for bf16 parity).
        x32 = x.astype(at_least_fp32(x.dtype))
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        # The weight is cast to the compute dtype too: fp32 master weights must not promote a
        # bf16 activation back to fp32 (every matmul after the norm would then run in fp32).
        w = self.weight[...].astype(x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))  # [1, .., D]
        return w * x32.astype(x.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScalingConfig,
                  dtype=jnp.float32) -> jnp.ndarray:
    """Inverse frequencies [hd/2] in ``dtype`` (fp32, or float64 for a float64 model), with
    Llama-3.1 piecewise scaling when configured."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=dtype) / head_dim))
    if scaling.type == "none":
        return inv_freq
    # Llama-3: long wavelengths are divided by `factor`, short ones kept, medium ones interpolated.
    old_len = scaling.original_max_position
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(is_medium, smoothed, scaled)


def rope_tables(positions_BT, inv_freq, max_position: int | None = None):
    """``(cos, sin)``, each ``[B, T, 1, hd/2]``: computed once per forward, shared by every layer.

    With ``max_position`` the values are looked up in a ``[max_position, hd/2]`` table of every
    position instead (positions are clipped into it). The table depends only on static shapes,
    so XLA folds it into a constant, and a decode step gathers 2 * hd/2 values per row instead
    of evaluating cos and sin inside every layer's q and k rotation (XLA fuses the elementwise
    producer into each consumer: ~150 µs of a ~2 ms demo-model decode step on CPU).
    """
    dt = inv_freq.dtype  # fp32, or float64 for a float64 model
    if max_position is None:
        angles = positions_BT.astype(dt)[..., None] * inv_freq[None, None, :]  # [B, T, hd/2]
        return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    table = jnp.arange(max_position, dtype=dt)[:, None] * inv_freq[None, :]  # [P, hd/2]
    idx = jnp.clip(positions_BT, 0, max_position - 1)
    return jnp.cos(table)[idx][:, :, None, :], jnp.sin(table)[idx][:, :, None, :]


def apply_rope(x_BTNK, rope):
    """Rotate-half RoPE (HF convention: the two halves of the head dim form the pairs)."""
    cos, sin = rope
    x = x_BTNK.astype(at_least_fp32(x_BTNK.dtype))
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BTNK.dtype)


def grouped_attention(q_BTHK, k, v, allowed_BTS, kv_layout: str = "BSNK"):
    """Softmax attention with grouped KV heads (H = N * group), in fp32 (float64 for float64).

    ``kv_layout="BSNK"``: ``k``/``v`` are fresh projections ``[B, S, N, K]``; ``"cache"``: the KV
    cache's layout, keys ``[B, N, K, S]`` and values ``[B, N, S, K]``. ``allowed_BTS`` is True
    where query t may see key s. A query with no allowed key (padding) gets zeros, not NaNs.

    Batch and KV-head dims are merged into one batch dim before the two matmuls: XLA:CPU runs a
    dot with two batch dims ~6x slower than the same dot with one (measured on a decode step),
    and the merge is a free reshape in the cache layout.
    """
    b, t, h, hd = q_BTHK.shape
    if kv_layout == "BSNK":
        k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
    elif kv_layout != "cache":
        raise ValueError(f"kv_layout must be 'BSNK' or 'cache', got {kv_layout!r}")
    n, s = v.shape[1], v.shape[2]
    g = h // n
    acc = at_least_fp32(q_BTHK.dtype)
    q = q_BTHK.astype(acc).reshape(b, t, n, g, hd).transpose(0, 2, 3, 1, 4)
    q = q.reshape(b * n, g * t, hd)
    k = k.astype(acc).reshape(b * n, hd, s)
    v = v.astype(acc).reshape(b * n, s, hd)
    scores = jax.lax.dot_general(q, k, (((2,), (1,)), ((0,), (0,)))) / math.sqrt(hd)  # [BN, GT, S]
    mask = jnp.broadcast_to(allowed_BTS[:, None, None], (b, n, g, t, s)).reshape(b * n, g * t, s)
    scores = jnp.where(mask, scores, -1e30)
    probs = jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)
    out = jax.lax.dot_general(probs, v, (((2,), (1,)), ((0,), (0,))))  # [BN, GT, K]
    out = out.reshape(b, n, g, t, hd).transpose(0, 3, 1, 2, 4).reshape(b, t, h, hd)
    return out.astype(q_BTHK.dtype)


ATTENTION_CHOICES = ("auto", "xla", "cudnn", "splash", "reference")


def _splash_fits(q_BTHK, num_kv_heads: int) -> bool:
    """Whether the splash kernel takes these shapes (and the current mesh): sequence a multiple of
    its 128-wide blocks, head dim a multiple of 128 (the lane width; smaller head dims are not
    tried because we could not test them on a TPU), rows / KV heads divisible by the mesh axes
    the wrapper shards them over."""
    b, t, _, hd = q_BTHK.shape
    if t % 128 or hd % 128:
        return False
    if jax.sharding.get_abstract_mesh().empty and jax.device_count() > 1:
        # Several devices but no context mesh (jax.set_mesh) to shard_map over: GSPMD may have
        # sharded the inputs, and a Pallas call has no partitioning rule. XLA then.
        return False
    batch_n, head_n = _mesh_split_sizes()
    return b % batch_n == 0 and num_kv_heads % head_n == 0


def resolve_attention(impl: str, q_BTHK, num_kv_heads: int) -> str:
    """``"auto"`` → the kernel for this backend and these shapes; other names are returned as is.

    GPU: ``"cudnn"`` (flash attention) when the compute dtype is bf16/fp16 (cuDNN has no fp32
    kernel) and the head dim is a multiple of 8 no larger than 256; JAX checks the exact limits
    while tracing (head dim ≤ 128 before Hopper, the cuDNN version, …) and
    :func:`causal_attention` falls back to XLA if they refuse. TPU: ``"splash"``
    (``jax.experimental.pallas.ops.tpu.splash_attention``) when :func:`_splash_fits`, which on
    more than one device needs the step traced under ``jax.set_mesh``. Otherwise ``"xla"``.
    float64 (a precision check, not a training setting) → ``"reference"``: every fused kernel,
    ``jax.nn.dot_product_attention``'s XLA one included, takes its softmax in fp32, so asking
    for one explicitly with float64 is refused rather than silently run at fp32 precision.
    (cuDNN and splash have not run in this repo's tests: no GPU / TPU there; see
    ``tests/models/test_attention.py`` for what is checked on CPU.)
    """
    if impl not in ATTENTION_CHOICES:
        raise ValueError(f"attention={impl!r} is not one of {list(ATTENTION_CHOICES)}")
    if q_BTHK.dtype == jnp.float64:
        if impl not in ("auto", "reference"):
            raise ValueError(f"attention={impl!r} computes its softmax in fp32 and cannot run a "
                             "float64 model at float64 precision: use 'reference' (or 'auto')")
        return "reference"
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    hd = q_BTHK.shape[-1]
    if backend in ("gpu", "cuda") and q_BTHK.dtype in (jnp.bfloat16, jnp.float16) and hd % 8 == 0 \
            and hd <= 256:
        return "cudnn"
    if backend == "tpu" and _splash_fits(q_BTHK, num_kv_heads):
        return "splash"
    return "xla"


def causal_attention(q_BTHK, k_BSNK, v_BSNK, lengths_B, impl: str = "auto", *,
                     interpret: bool = False):
    """Causal self-attention of right-padded rows, ``[B, T, H, hd]`` → ``[B, T, H, hd]``.

    Row b holds ``lengths_B[b]`` real tokens at positions ``0 … lengths_B[b]-1`` (the attention
    mask is a prefix of ones: right padding, as every caller builds it). Query t attends to keys
    ``s <= t`` with ``s < lengths_B[b]``; padded query rows (``t >= lengths_B[b]``) get exact
    zeros, never NaN, whichever kernel runs (each kernel treats fully-masked rows its own way, so
    the zeros are imposed here). ``k``/``v`` have N = H / group KV heads (GQA): every kernel takes
    the grouped heads directly, no KV repeat.

    ``impl``: ``"reference"`` (:func:`grouped_attention`, fp32 softmax, the CPU reference),
    ``"xla"`` (``jax.nn.dot_product_attention(implementation="xla")``), ``"cudnn"`` (its cuDNN
    flash kernel: bf16/fp16 only, raises otherwise), ``"splash"`` (the TPU Pallas kernel, see
    :func:`splash_causal_attention`; ``interpret=True`` runs it in the Pallas interpreter, how
    it is tested on CPU) or ``"auto"`` (:func:`resolve_attention`; when cuDNN refuses the
    shapes at trace time it falls back to XLA).
    """
    b, t, h, hd = q_BTHK.shape
    n = k_BSNK.shape[2]
    lengths_B = lengths_B.astype(jnp.int32)
    valid_BT = jnp.arange(t, dtype=jnp.int32)[None, :] < lengths_B[:, None]
    choice = resolve_attention(impl, q_BTHK, n)
    if choice == "reference":
        allowed = jnp.tril(jnp.ones((t, t), bool))[None] & valid_BT[:, None, :] & valid_BT[:, :, None]
        out = grouped_attention(q_BTHK, k_BSNK, v_BSNK, allowed)
    elif choice == "splash":
        out = splash_causal_attention(q_BTHK, k_BSNK, v_BSNK, lengths_B, interpret=interpret)
    else:
        def fused(implementation):
            # Lengths, not a [B, T, S] mask: cuDNN then skips the padded and the upper-triangle
            # blocks instead of reading a mask (XLA builds the same mask either way).
            return jax.nn.dot_product_attention(
                q_BTHK, k_BSNK, v_BSNK, is_causal=True, query_seq_lengths=lengths_B,
                key_value_seq_lengths=lengths_B, implementation=implementation)

        if choice == "cudnn" and impl == "auto":
            try:  # JAX checks cuDNN's shape / version limits while tracing: fall back if refused
                out = fused("cudnn")
            except (NotImplementedError, ValueError, RuntimeError):
                out = fused("xla")
        else:
            out = fused(choice)
    # where, not multiply: a kernel's fully-masked row may hold NaN, and NaN * 0 is NaN.
    return jnp.where(valid_BT[:, :, None, None], out, 0).astype(q_BTHK.dtype)


# ----------------------------------------------------------------------------- TPU splash kernel
_BATCH_MESH_AXES = mesh_axes_of("batch")  # rows: (data, fsdp)
(_HEAD_MESH_AXIS,) = mesh_axes_of("q_heads")  # heads: tensor (kv_heads follows the same rule)


def _mesh_split_sizes() -> tuple[int, int]:
    """(devices the batch is split over, devices the heads are split over) in the context mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1, 1
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    return (int(np.prod([sizes.get(a, 1) for a in _BATCH_MESH_AXES])),
            sizes.get(_HEAD_MESH_AXIS, 1))


def splash_causal_attention(q_BTHK, k_BSNK, v_BSNK, lengths_B, *, interpret: bool = False):
    """Causal GQA attention with the maintained Pallas TPU kernel
    ``jax.experimental.pallas.ops.tpu.splash_attention`` (block-sparse flash attention: blocks
    above the diagonal are skipped, not masked).

    Layout: the kernel is MQA-shaped (``[G, T, hd]`` queries against one ``[T, hd]`` KV head), so
    it is vmapped over rows and KV heads. Right padding becomes segment ids (1 = real token,
    0 = padding): a padded query then only sees padded keys (never a fully-masked row, which the
    kernel forbids) and :func:`causal_attention` zeroes those rows. A Pallas call has no GSPMD
    partitioning rule, so under a mesh it runs inside ``shard_map`` with rows split over
    (data, fsdp) and heads over tensor, like the activations around it; the sequence is not split.

    Verified against :func:`grouped_attention` in interpret mode on CPU only
    (``tests/models/test_attention.py``); it has not run on a TPU in this repo's tests.
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as sm,
    )

    b, t, h, hd = q_BTHK.shape
    n = k_BSNK.shape[2]
    g = h // n
    block = next(x for x in (512, 256, 128, t) if t % x == 0)
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(g)])
    kernel = sk.make_splash_mqa(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                interpret=interpret)

    def local(q, k, v, lens):
        lb, _, lh, _ = q.shape
        ln = k.shape[2]
        seg_BT = (jnp.arange(t, dtype=jnp.int32)[None, :] < lens[:, None]).astype(jnp.int32)
        q_BNGTK = (q / math.sqrt(hd)).astype(q.dtype).reshape(lb, t, ln, g, hd)
        q_BNGTK = q_BNGTK.transpose(0, 2, 3, 1, 4)
        k_BNTK, v_BNTK = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

        def one(q_GTK, k_TK, v_TK, seg_T):
            return kernel(q_GTK, k_TK, v_TK, segment_ids=sk.SegmentIds(seg_T, seg_T))

        out = jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, None)))(q_BNGTK, k_BNTK, v_BNTK, seg_BT)
        return out.transpose(0, 3, 1, 2, 4).reshape(lb, t, lh, hd)

    batch_n, head_n = _mesh_split_sizes()
    if batch_n * head_n == 1:
        return local(q_BTHK, k_BSNK, v_BSNK, lengths_B)
    from jax.sharding import PartitionSpec as P

    mesh = jax.sharding.get_abstract_mesh()
    rows = tuple(a for a in _BATCH_MESH_AXES if a in mesh.axis_names) or None
    heads = _HEAD_MESH_AXIS if _HEAD_MESH_AXIS in mesh.axis_names else None
    spec = P(rows, None, heads, None)
    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, P(rows)), out_specs=spec,
                         check_vma=False)(q_BTHK, k_BSNK, v_BSNK, lengths_B)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, hd = cfg.hidden_size, cfg.resolved_head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, hd
        pdt = DTYPES[cfg.param_dtype]
        std = 0.02
        self.q_proj = param(rngs, (d, cfg.num_heads * hd), ("embed", "q_heads"), pdt, std)
        self.k_proj = param(rngs, (d, cfg.num_kv_heads * hd), ("embed", "kv_heads"), pdt, std)
        self.v_proj = param(rngs, (d, cfg.num_kv_heads * hd), ("embed", "kv_heads"), pdt, std)
        self.o_proj = param(rngs, (cfg.num_heads * hd, d), ("q_heads", "embed"), pdt, std)
        self.qkv_bias = cfg.qkv_bias
        if cfg.qkv_bias:
            self.q_bias = nnx.Param(jnp.zeros((cfg.num_heads * hd,), pdt), axes=("q_heads",))
            self.k_bias = nnx.Param(jnp.zeros((cfg.num_kv_heads * hd,), pdt), axes=("kv_heads",))
            self.v_bias = nnx.Param(jnp.zeros((cfg.num_kv_heads * hd,), pdt), axes=("kv_heads",))

    def project_qkv(self, x_BTD, rope):
        """q, k (rotated with ``rope`` = :func:`rope_tables`) and v, each ``[B, T, heads, hd]``."""
        b, t, _ = x_BTD.shape
        dt = x_BTD.dtype
        # One matmul for q, k and v: three small matmuls run well below the CPU's matmul peak
        # at decode batch sizes. Inside the decode loop XLA hoists the (loop-invariant) concat.
        w = jnp.concatenate([self.q_proj[...], self.k_proj[...], self.v_proj[...]], axis=1)
        qkv = x_BTD @ w.astype(dt)
        if self.qkv_bias:
            qkv = qkv + jnp.concatenate(
                [self.q_bias[...], self.k_bias[...], self.v_bias[...]]).astype(dt)[None, None, :]
        nq, nkv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q, k, v = qkv[..., :nq], qkv[..., nq:nq + nkv], qkv[..., nq + nkv:]
        q = q.reshape(b, t, self.num_heads, self.head_dim)
        k = k.reshape(b, t, self.num_kv_heads, self.head_dim)
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
        return apply_rope(q, rope), apply_rope(k, rope), v

    def output(self, attn_BTHK):
        b, t = attn_BTHK.shape[:2]
        flat = attn_BTHK.reshape(b, t, self.num_heads * self.head_dim)
        return flat @ self.o_proj[...].astype(flat.dtype)


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        pdt = DTYPES[cfg.param_dtype]
        self.gate_proj = param(rngs, (d, f), ("embed", "mlp"), pdt, 0.02)
        self.up_proj = param(rngs, (d, f), ("embed", "mlp"), pdt, 0.02)
        self.down_proj = param(rngs, (f, d), ("mlp", "embed"), pdt, 0.02)

    def __call__(self, x):
        dt = x.dtype
        f = self.gate_proj.shape[1]
        gate_up = x @ jnp.concatenate([self.gate_proj[...], self.up_proj[...]], axis=1).astype(dt)
        gate = jax.nn.silu(gate_up[..., :f])
        return (gate * gate_up[..., f:]) @ self.down_proj[...].astype(dt)
