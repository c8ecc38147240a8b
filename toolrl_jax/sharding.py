"""Device mesh (axes ``data``, ``fsdp``, ``tensor``) and logical-axis → mesh-axis rules.

Every parameter of the model carries logical axis names (``axes`` metadata, see models/layers.py).
``LOGICAL_RULES`` says which mesh axis each logical axis is split over; :func:`spec_for` turns a
parameter's axes into a ``PartitionSpec`` and *raises* when a dimension is not divisible by the
mesh axes it is split over (silently replicating a weight that was meant to be sharded hides
out-of-memory surprises until a real run), or when one mesh axis would shard two dims.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from toolrl_jax.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
LOGICAL_RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "norm": None,
    "length": None,
    "layers": None,
    "head_dim": None,
}


class ShardingError(ValueError):
    """A weight or array cannot be laid out on the mesh as the rules say."""


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Resolves ``data=-1`` and checks the product against the device count."""
    fixed = cfg.fsdp * cfg.tensor
    if cfg.data == -1:
        if num_devices % fixed:
            raise ConfigError(
                f"config.mesh: fsdp*tensor={fixed} does not divide the {num_devices} devices"
            )
        return (num_devices // fixed, cfg.fsdp, cfg.tensor)
    total = cfg.data * fixed
    if total > num_devices:
        raise ConfigError(
            f"config.mesh: data*fsdp*tensor={total} exceeds the {num_devices} available devices "
            f"(allowed: a product <= {num_devices}, or config.mesh.data=-1)"
        )
    return (cfg.data, cfg.fsdp, cfg.tensor)


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(cfg, len(devices))
    used = int(np.prod(shape))
    grid = np.asarray(devices[:used]).reshape(shape)
    # Auto axes: GSPMD propagates shardings through the model code (Explicit axes would need
    # sharding annotations on every op).
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def mesh_axes_of(logical: str | None) -> tuple[str, ...]:
    """The mesh axes a logical axis is split over (``LOGICAL_RULES``), as a tuple."""
    if logical is None:
        return ()
    if logical not in LOGICAL_RULES:
        raise ShardingError(f"no sharding rule for logical axis '{logical}'")
    rule = LOGICAL_RULES[logical]
    if rule is None:
        return ()
    return (rule,) if isinstance(rule, str) else tuple(rule)


def spec_for(name: str, axes: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh):
    """PartitionSpec for an array with logical ``axes``; raises on non-divisible or reused axes."""
    if len(axes) != len(shape):
        raise ShardingError(f"{name}: {len(axes)} logical axes {axes} for shape {shape}")
    used: set[str] = set()
    parts = []
    for dim, logical in zip(shape, axes, strict=False):
        mesh_axes = tuple(a for a in mesh_axes_of(logical) if mesh.shape[a] > 1)
        for a in mesh_axes:
            if a in used:
                raise ShardingError(f"{name}: mesh axis '{a}' would shard two dims of {axes}")
            used.add(a)
        size = int(np.prod([mesh.shape[a] for a in mesh_axes])) if mesh_axes else 1
        if dim % size:
            raise ShardingError(
                f"{name}: dim '{logical}' of size {dim} is not divisible by mesh axes "
                f"{mesh_axes} of size {size} (shape {shape}); change config.mesh or the model"
            )
        parts.append(mesh_axes if len(mesh_axes) > 1 else (mesh_axes[0] if mesh_axes else None))
    return PartitionSpec(*parts)


def path_name(path) -> str:
    """A pytree key path as a dotted parameter name (``layers.0.mlp.up_proj``)."""
    out = []
    for p in path:
        key = getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))
        out.append(str(key))
    return ".".join(out)


def _is_variable(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh):
    """NamedSharding for every leaf of an nnx ``State`` from its ``axes`` metadata.

    Leaves without ``axes`` (RNG counters, scalars) are replicated.
    """

    def one(path, leaf):
        axes = getattr(leaf, "axes", None) if _is_variable(leaf) else None
        value = leaf.get_value() if _is_variable(leaf) else leaf
        if axes is None:
            spec = PartitionSpec()
        else:
            spec = spec_for(path_name(path), tuple(axes), tuple(value.shape), mesh)
        sharding = NamedSharding(mesh, spec)
        if _is_variable(leaf):
            return leaf.replace(sharding)
        return sharding

    return jax.tree_util.tree_map_with_path(one, state, is_leaf=_is_variable)


def named_shardings(state, mesh: Mesh) -> dict[str, NamedSharding]:
    """Flat ``{dotted.param.name: NamedSharding}`` (for the plan table and tests)."""
    shardings = state_shardings(state, mesh)
    flat = jax.tree_util.tree_flatten_with_path(shardings, is_leaf=_is_variable)[0]
    return {path_name(p): (v.get_value() if _is_variable(v) else v) for p, v in flat}


def batch_spec(ndim: int, leading: int = 0) -> PartitionSpec:
    """Rows over the ``batch`` rule's mesh axes (data, fsdp) at dim ``leading``; the rest
    replicated (``leading=1``: a stack of micro-batches, rows in dim 1)."""
    return PartitionSpec(*([None] * leading), mesh_axes_of("batch"),
                         *([None] * (ndim - leading - 1)))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Shards dim 0 over (data, fsdp); replicates the rest."""
    return NamedSharding(mesh, batch_spec(ndim))


def check_batch_divisible(batch: int, mesh: Mesh, what: str) -> None:
    n = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch % n:
        raise ConfigError(
            f"{what}={batch} must be divisible by mesh data*fsdp={n} (the batch is split over both)"
        )


def check_heads_fit_mesh(model_cfg, mesh: Mesh) -> None:
    """Tensor parallelism splits attention by whole heads: ``num_heads`` and ``num_kv_heads`` must
    be multiples of the ``tensor`` axis. (The fused ``[D, heads*hd]`` weights would pass the
    per-dimension check of :func:`spec_for` — Qwen2.5-7B's 28 × 128 = 3584 columns divide by 8 —
    yet a head would straddle two devices, so it is refused here, by heads.)"""
    t = mesh.shape["tensor"]
    q, kv = model_cfg.num_heads, model_cfg.num_kv_heads
    fits = [d for d in range(1, q + 1) if q % d == 0 and kv % d == 0]
    for name, heads in (("num_heads", q), ("num_kv_heads", kv)):
        if heads % t:
            raise ShardingError(
                f"config.model.{name}={heads} is not divisible by config.mesh.tensor={t}: tensor "
                f"parallelism splits attention by whole heads; choose tensor from {fits}")


def maybe_initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize()`` on multi-host runs (before any other JAX call).

    Multi-host is: the standard coordinator variable (``JAX_COORDINATOR_ADDRESS``, set by
    ``launch/tpu_vm.sh`` and by GPU cluster launchers), Cloud TPU's worker list, a Cloud TPU VM
    (``TPU_ACCELERATOR_TYPE`` or ``/dev/accel0``: there ``initialize()`` reads the topology from
    the VM and is harmless on a single host — a pod shell often has no worker list in its
    environment), or ``TOOLRL_DISTRIBUTED=1``. CPU tests and laptops are unaffected.
    """
    multi_host = (bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
                  or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
                  or bool(os.environ.get("TPU_ACCELERATOR_TYPE"))
                  or os.path.exists("/dev/accel0")
                  or os.environ.get("TOOLRL_DISTRIBUTED") == "1")
    if multi_host:
        jax.distributed.initialize()
    return multi_host


def is_lead_process() -> bool:
    """Process 0 writes what a run writes once (metrics, reports, exports, prepared data)."""
    return jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Blocks until every process reaches the barrier ``name`` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def lead_first(name: str, fn):
    """Runs ``fn`` on process 0 first, then on the others (which find its files and reuse them):
    shared-filesystem set-up without two processes writing the same files at once."""
    if not is_lead_process():
        sync_processes(name)
    out = fn()
    if is_lead_process():
        sync_processes(name)
    return out


def from_lead(value: int | bool) -> int | bool:
    """Process 0's ``value`` (a bool or an int) on every process: decisions read from a shared
    file system (is a phase done? is a result cached? which step to resume at?) must be the same
    everywhere, or processes launch different programs and the collectives hang."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    out = int(multihost_utils.broadcast_one_to_all(np.int32(value)))
    return bool(out) if isinstance(value, bool) else out


def constrain_rows(x):
    """Pins an activation's rows (dim 0) to the ``batch`` rule's mesh axes (data × fsdp).

    Without it GSPMD is free to keep a micro-batch whole on every chip of the fsdp axis and split
    the matmul contractions instead (the weights' layout), so activation memory would grow with
    fsdp. A no-op outside a mesh context, or when the rows do not divide over those axes (then
    GSPMD decides, as before).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    axes = tuple(a for a in mesh_axes_of("batch") if a in mesh.shape and mesh.shape[a] > 1)
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if size == 1 or x.shape[0] % size:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec(axes, *([None] * (x.ndim - 1))))
