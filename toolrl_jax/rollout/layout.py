"""Where rollout arrays live and what this process owns: the host side of a sharded rollout.

The rollout's slot batch (``slots`` rows decoded together) is split over the mesh axes of the
``batch`` rule (data × fsdp), the KV cache's heads over ``tensor``; the parameters are resharded
once per rollout into a *decode layout* (``decode_params``: the trainer's fsdp/data splits
dropped — tensor-parallel within the slice, data-parallel across it — and cast to the compute
dtype), because a decode step that all-gathers fsdp-sharded weights on every token is
bandwidth-bound on the gather, not on the weights.

On many hosts every process holds the slots of its own devices (:attr:`RolloutLayout.owned`):
it fills only those rows of each input (``put``), reads back only those rows (``local_rows``),
and runs only those rows' tool calls. The host choices that pick a compiled program must still
be identical everywhere, so they go through :func:`agree` — one small all-gather per engine
iteration — and finished trajectories through :func:`gather_objects`.

Without a mesh (``mesh=None``) everything is one default device and the functions are plain
``jnp.asarray`` / ``np.asarray``.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl_jax.sharding import mesh_axes_of

# Trainer-layout mesh axes a decode-layout parameter is *not* split over (see module docstring).
_DROPPED_FOR_DECODE = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class RolloutLayout:
    """Row (slot) and KV-head placement of the rollout batch on ``mesh`` (None: one device)."""

    mesh: Mesh | None = None

    @functools.cached_property
    def row_axes(self) -> tuple[str, ...]:
        if self.mesh is None:
            return ()
        return tuple(a for a in mesh_axes_of("batch") if self.mesh.shape.get(a, 1) > 1)

    @property
    def row_shards(self) -> int:
        """How many ways rows are split (a slot count must be a multiple of it)."""
        if self.mesh is None:
            return 1
        return int(np.prod([self.mesh.shape[a] for a in self.row_axes])) if self.row_axes else 1

    def head_axes(self, num_kv_heads: int) -> tuple[str, ...]:
        if self.mesh is None:
            return ()
        axes = tuple(a for a in mesh_axes_of("kv_heads") if self.mesh.shape.get(a, 1) > 1)
        size = int(np.prod([self.mesh.shape[a] for a in axes])) if axes else 1
        return axes if num_kv_heads % size == 0 else ()

    # ------------------------------------------------------------------ shardings
    def rows_spec(self, ndim: int) -> PartitionSpec:
        return PartitionSpec(self.row_axes or None, *([None] * (ndim - 1)))

    def rows(self, ndim: int) -> NamedSharding | None:
        return None if self.mesh is None else NamedSharding(self.mesh, self.rows_spec(ndim))

    def replicated(self) -> NamedSharding | None:
        return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec())

    def cache_specs(self, num_kv_heads: int) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
        """Keys ``[B, KV, hd, L]`` and values ``[B, KV, L, hd]``: rows × heads; lengths: rows."""
        heads = self.head_axes(num_kv_heads) or None
        rows = self.row_axes or None
        return (PartitionSpec(rows, heads, None, None), PartitionSpec(rows, heads, None, None),
                PartitionSpec(rows))

    def check_slots(self, slots: int) -> None:
        if slots % self.row_shards:
            raise ValueError(f"{slots} rollout slots do not split over the {self.row_shards} row "
                             f"shards of mesh axes {self.row_axes} (rollout.slots / the rollout "
                             "batch must be a multiple of mesh data*fsdp)")

    # ------------------------------------------------------------------ ownership
    @functools.cache  # noqa: B019 - layouts are few and live as long as engines
    def owned(self, n: int) -> np.ndarray:
        """Sorted global row indices of an ``n``-row, row-sharded array held by this process."""
        if self.mesh is None:
            return np.arange(n)
        self.check_slots(n)
        index_map = self.rows(1).addressable_devices_indices_map((n,))
        held = set()
        for (rows,) in index_map.values():
            held.update(range(*rows.indices(n)))
        return np.asarray(sorted(held), np.int64)

    # ------------------------------------------------------------------ host <-> device
    def put(self, host: np.ndarray) -> jax.Array:
        """A row-sharded global array from a full-size host array of which only this process's
        rows (:meth:`owned`) are read — the others may hold anything."""
        if self.mesh is None:
            return jnp.asarray(host)
        sharding = self.rows(host.ndim)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    def put_replicated(self, host: np.ndarray) -> jax.Array:
        """The same value on every device (it must be the same on every process)."""
        if self.mesh is None:
            return jnp.asarray(host)
        return jax.make_array_from_callback(host.shape, self.replicated(), lambda idx: host[idx])

    def local_rows(self, *arrays: jax.Array) -> list[np.ndarray]:
        """This process's rows of row-sharded arrays, in :meth:`owned` order (one transfer)."""
        if self.mesh is None:
            return [np.asarray(a) for a in jax.device_get(list(arrays))]
        plans = []
        for a in arrays:
            seen, shards = set(), []
            for shard in a.addressable_shards:  # replicas over non-row axes: read each rows once
                start, stop, _ = shard.index[0].indices(a.shape[0])
                if start not in seen:
                    seen.add(start)
                    shards.append((start, stop, shard.data))
            plans.append(sorted(shards, key=lambda s: s[0]))
        host = jax.device_get([[d for _, _, d in p] for p in plans])
        out = []
        for a, plan, datas in zip(arrays, plans, host):
            full = np.zeros(a.shape, a.dtype)
            for (start, stop, _), d in zip(plan, datas):
                full[start:stop] = d
            out.append(full[self.owned(a.shape[0])])
        return out


def _decode_dtype(dtype, compute_dtype):
    """Floating weights wider than ``compute_dtype`` are cast down (fp32 master → bf16 decode)."""
    if (compute_dtype is not None and jnp.issubdtype(dtype, jnp.floating)
            and jnp.dtype(dtype).itemsize > jnp.dtype(compute_dtype).itemsize):
        return jnp.dtype(compute_dtype)
    return jnp.dtype(dtype)


def _decode_sharding(leaf, layout: RolloutLayout) -> NamedSharding:
    """The leaf's trainer sharding with its data / fsdp splits dropped (tensor splits kept)."""
    sharding = getattr(leaf, "sharding", None)
    spec = sharding.spec if isinstance(sharding, NamedSharding) else PartitionSpec()
    return NamedSharding(layout.mesh, PartitionSpec(*[_without_dropped(p) for p in spec]))


def decode_params(params, layout: RolloutLayout, compute_dtype=None):
    """The params in the decode layout (one resharding program): fsdp/data splits dropped, and
    floating weights wider than ``compute_dtype`` cast down."""
    def cast(x):
        return x.astype(_decode_dtype(x.dtype, compute_dtype))

    if layout.mesh is None:
        return jax.tree.map(cast, params) if compute_dtype is not None else params
    shardings = jax.tree.map(lambda x: _decode_sharding(x, layout), params)
    return jax.jit(lambda p: jax.tree.map(cast, p), out_shardings=shardings)(params)


def abstract_decode_params(params, layout: RolloutLayout, compute_dtype=None):
    """:func:`decode_params` of abstract params (``jax.ShapeDtypeStruct`` leaves with shardings),
    for planning without allocating a weight."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, _decode_dtype(x.dtype, compute_dtype),
        sharding=_decode_sharding(x, layout) if layout.mesh is not None else None), params)


def _without_dropped(part):
    if part is None:
        return None
    axes = (part,) if isinstance(part, str) else tuple(part)
    kept = tuple(a for a in axes if a not in _DROPPED_FOR_DECODE)
    return None if not kept else (kept[0] if len(kept) == 1 else kept)


# ---------------------------------------------------------------------- agreement across hosts
def agree(values: dict[str, int], how: dict[str, str]) -> dict[str, int]:
    """Every process's ``values`` combined (``how[name]``: ``"max"`` or ``"sum"``), identical on
    every process: one all-gather of a few integers. Host choices that select a compiled program
    (cache window, widths) or end a loop must come from here, or processes dispatch different
    programs and the collectives hang."""
    if jax.process_count() == 1:
        return dict(values)
    from jax.experimental import multihost_utils

    names = sorted(values)
    mine = np.asarray([values[n] for n in names], np.int64)
    everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(names))
    reduce = {"max": np.max, "sum": np.sum}
    return {n: int(reduce[how[n]](everyone[:, i])) for i, n in enumerate(names)}


def gather_objects(items: list) -> list:
    """Every process's ``items`` (picklable; our own processes' data), concatenated in process
    order, on every process: two all-gathers (lengths, then the padded bytes)."""
    if jax.process_count() == 1:
        return list(items)
    from jax.experimental import multihost_utils

    blob = np.frombuffer(pickle.dumps(items), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int64(blob.size))).reshape(-1)
    padded = np.zeros((int(sizes.max()),), np.uint8)
    padded[: blob.size] = blob
    blobs = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    out = []
    for size, row in zip(sizes, blobs):
        out.extend(pickle.loads(row[: int(size)].tobytes()))
    return out
