"""``mode=plan``: resolve config + mesh and report memory per device without allocating weights.

Everything here works on ``jax.eval_shape`` results, so a 7B plan runs on a laptop in seconds.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl_jax.config import Config
from toolrl_jax.models.decoder import Decoder
from toolrl_jax.sharding import named_shardings, spec_for


@dataclasses.dataclass
class WeightPlan:
    name: str
    shape: tuple[int, ...]
    dtype: str
    spec: str
    bytes_per_device: int


@dataclasses.dataclass
class Plan:
    mesh_shape: dict[str, int]
    num_params: int
    weights: list[WeightPlan]
    param_bytes_per_device: int
    optimizer_bytes_per_device: int
    kv_cache_bytes_per_device: int
    kv_cache_shape: tuple[int, ...]

    @property
    def total_bytes_per_device(self) -> int:
        return self.param_bytes_per_device + self.optimizer_bytes_per_device + \
            self.kv_cache_bytes_per_device


def _shard_factor(spec, mesh: Mesh) -> int:
    factor = 1
    for part in spec:
        for axis in (part if isinstance(part, tuple) else (part,)):
            if axis is not None:
                factor *= mesh.shape[axis]
    return factor


def make_plan(cfg: Config, mesh: Mesh) -> Plan:
    abstract = nnx.eval_shape(lambda: Decoder(cfg.model, nnx.Rngs(0)))
    state = nnx.state(abstract, nnx.Param)
    shardings = named_shardings(state, mesh)
    flat = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )[0]
    weights = []
    num_params = 0
    param_bytes = 0
    opt_bytes = 0
    for (_, var), (name, sharding) in zip(flat, shardings.items(), strict=False):
        value = var.get_value()
        n = int(np.prod(value.shape))
        factor = _shard_factor(sharding.spec, mesh)
        per_dev = n * jnp.dtype(value.dtype).itemsize // factor
        num_params += n
        param_bytes += per_dev
        opt_bytes += 2 * n * 4 // factor  # AdamW mu + nu in fp32, sharded like the weight
        weights.append(WeightPlan(name, tuple(value.shape), str(value.dtype), str(sharding.spec),
                                  per_dev))
    m = cfg.model
    batch = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    kv_shape = (m.num_layers, batch, cfg.rollout.max_cache_len, m.num_kv_heads,
                m.resolved_head_dim)
    kv_spec = spec_for("kv_cache", ("layers", "batch", "length", "kv_heads", "head_dim"),
                       kv_shape, mesh)
    kv_bytes = 2 * int(np.prod(kv_shape)) * jnp.dtype(m.dtype).itemsize // _shard_factor(
        kv_spec, mesh)
    return Plan(dict(mesh.shape), num_params, weights, param_bytes, opt_bytes, kv_bytes, kv_shape)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def format_plan(cfg: Config, plan: Plan, max_rows: int = 40) -> str:
    lines = [
        f"config: {cfg.name}  ({cfg.model.architecture}, {cfg.model.num_layers} layers, "
        f"d={cfg.model.hidden_size}, vocab={cfg.model.vocab_size})",
        "mesh: " + ", ".join(f"{k}={v}" for k, v in plan.mesh_shape.items()),
        f"parameters: {plan.num_params:,} ({plan.num_params / 1e6:.2f} M)",
        "",
        "memory per device:",
        f"  params            {_fmt_bytes(plan.param_bytes_per_device):>12}",
        f"  optimizer (AdamW) {_fmt_bytes(plan.optimizer_bytes_per_device):>12}",
        f"  KV cache          {_fmt_bytes(plan.kv_cache_bytes_per_device):>12}   "
        f"shape {plan.kv_cache_shape} x2 (k, v)",
        f"  total             {_fmt_bytes(plan.total_bytes_per_device):>12}",
        "",
        f"{'weight':<40} {'shape':<18} {'dtype':<9} {'sharding':<28} {'per device':>11}",
    ]
    rows = plan.weights
    # Layers repeat: show layer 0 in full and collapse the others into one line.
    shown = [w for w in rows if not w.name.startswith("layers.") or w.name.startswith("layers.0.")]
    for w in shown[:max_rows]:
        lines.append(f"{w.name:<40} {str(w.shape):<18} {w.dtype:<9} {w.spec:<28} "
                     f"{_fmt_bytes(w.bytes_per_device):>11}")
    hidden = len(rows) - len(shown)
    if hidden:
        lines.append(f"... and {hidden} more weights in layers 1..{cfg.model.num_layers - 1} "
                     "(same shapes and shardings as layer 0)")
    return "\n".join(lines)
