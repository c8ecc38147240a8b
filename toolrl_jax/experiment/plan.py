"""``mode=plan``: compile the real RL train step ahead of time and report XLA's memory per device.

Nothing is assumed and no weight is allocated: the train state is ``nnx.eval_shape`` /
``jax.eval_shape`` of what :func:`toolrl_jax.train.state.create_state` builds (params in
``model.param_dtype``, fp32 AdamW moments sharded like their params), the batch is a
:class:`~toolrl_jax.train.batch.TrainBatch` of ``jax.ShapeDtypeStruct`` (one mini-batch:
``prompts_per_step·group_size / train.mini_batches`` rows × the run's padded length), and the
step is the one training runs — :func:`~toolrl_jax.train.steps.build_step` of the recipe's
:func:`~toolrl_jax.train.steps.rl_loss_fn`, jitted by :func:`~toolrl_jax.train.steps.jit_step`
with the same shardings and donation. ``jitted.lower(state, batch).compile().memory_analysis()``
is XLA's own buffer assignment for one device of the partitioned program: arguments (params,
optimizer state, batch), outputs, the donated (aliased) part, and temporaries (activations kept
for the backward pass, gradients, the optimizer update's scratch).

Target mesh: ``plan.devices=N`` simulates N devices on the CPU (``jax_num_cpu_devices``, set
before JAX starts its backends; if JAX is already up with fewer devices the planner re-runs the
same command in a fresh process with ``JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=N``). Equivalent by
hand: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. ``plan.devices=0`` plans on the
devices JAX sees (on a TPU host: a TPU compile, so TPU fusion and layouts).

Caveats: a CPU compile is XLA:CPU's buffer assignment, not the TPU's or GPU's (different
fusions, no HBM layout padding, and the memory-aware TPU scheduler is absent), so treat it as an
estimate within tens of percent. ``plan.slice_layers=k`` compiles k- and 2k-layer slices and
extrapolates the per-layer difference linearly (an unrolled 28-layer compile is slow on CPU); the
output says which was done. The rollout is compiled too: the decode segment and a whole-batch
append at the largest cache window (``rollout/compiled.py``), over the sharded KV cache and the
params in the decode layout (``rollout/layout.py``), next to the resident train state.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from toolrl_jax.buckets import RolloutShapes, round_up
from toolrl_jax.config import Config, ConfigError, ModelConfig
from toolrl_jax.models import layers as layers_lib
from toolrl_jax.models.decoder import Decoder, KVCache
from toolrl_jax.models.layers import DTYPES
from toolrl_jax.rl.recipes import make_recipe, rollout_rows
from toolrl_jax.rollout.compiled import CompiledRollout, SamplingParams
from toolrl_jax.rollout.factory import slot_count
from toolrl_jax.rollout.layout import RolloutLayout, abstract_decode_params
from toolrl_jax.sharding import (
    batch_sharding,
    check_batch_divisible,
    check_heads_fit_mesh,
    make_mesh,
    named_shardings,
)
from toolrl_jax.train.batch import TrainBatch
from toolrl_jax.train.state import abstract_state, make_optimizer
from toolrl_jax.train.steps import (
    ACCEL_BLOCK_MIB,
    LogitHead,
    activation_width,
    build_step,
    forward_groups,
    jit_step,
    rl_loss_fn,
)

GIB = 1024 ** 3


@dataclasses.dataclass
class WeightPlan:
    name: str
    shape: tuple[int, ...]
    dtype: str
    spec: str
    bytes_per_device: int


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """``compiled.memory_analysis()`` of the train step, bytes per device."""

    argument: int
    output: int
    alias: int  # outputs written into donated arguments (the new state over the old)
    temp: int  # activations kept for the backward pass, gradients, scratch
    code: int = 0

    @property
    def peak(self) -> int:
        """Arguments + outputs not aliased to them + temporaries: what must fit at once."""
        return self.argument + self.output - self.alias + self.temp

    @classmethod
    def of(cls, compiled) -> StepMemory:
        ma = compiled.memory_analysis()
        return cls(int(ma.argument_size_in_bytes), int(ma.output_size_in_bytes),
                   int(ma.alias_size_in_bytes), int(ma.temp_size_in_bytes),
                   int(ma.generated_code_size_in_bytes))

    def extrapolate(self, other: StepMemory, layers_a: int, layers_b: int,
                    layers: int) -> StepMemory:
        """Linear in the number of layers through (layers_a, self) and (layers_b, other)."""

        def line(a: int, b: int) -> int:
            return int(round(a + (b - a) * (layers - layers_a) / (layers_b - layers_a)))

        return StepMemory(*(line(getattr(self, f.name), getattr(other, f.name))
                            for f in dataclasses.fields(self)))


@dataclasses.dataclass(frozen=True)
class RolloutMemory:
    """The rollout's compiled programs, bytes per device (train state not included)."""

    slots: int
    cache_len: int
    decode_param_bytes: int  # params in the decode layout (compute dtype, no fsdp split)
    kv_cache_bytes: int  # keys + values of every layer, this device's shard
    decode: StepMemory  # decode segment at the whole-cache window
    append: StepMemory  # whole-batch append at the whole-cache window

    @property
    def peak(self) -> int:
        return max(self.decode.peak, self.append.peak)


@dataclasses.dataclass
class Plan:
    mesh_shape: dict[str, int]
    num_params: int
    weights: list[WeightPlan]
    param_bytes_per_device: int  # sharded param shards on one device (exact, from the shardings)
    optimizer_bytes_per_device: int  # sharded optimizer-state shards on one device (exact)
    batch_bytes_per_device: int  # the TrainBatch's shards on one device (exact)
    step: StepMemory  # compiled (or extrapolated) train step, per device
    compiled_layers: tuple[int, ...]  # layer counts actually compiled
    num_layers: int
    rows: int  # train-step rows (one mini-batch)
    micro_batches: int
    seq_len: int
    rollout: RolloutMemory  # compiled decode segment / append, per device
    hbm_bytes: int  # 0: no verdict
    compile_s: float
    rollout_compile_s: float
    platform: str
    compute_dtype: str  # the dtype the model's hidden states actually have
    attention: str  # the attention kernel the compiled step uses
    warnings: list[str] = dataclasses.field(default_factory=list)
    logit_head: str = ""  # the log-prob / entropy head's path and chunk in the step

    @property
    def extrapolated(self) -> bool:
        return self.compiled_layers != (self.num_layers,)

    @property
    def activations_bytes_per_device(self) -> int:
        return self.step.temp

    @property
    def total_bytes_per_device(self) -> int:
        """The train step's peak (params, optimizer state and batch are its arguments)."""
        return self.step.peak

    @property
    def rollout_bytes_per_device(self) -> int:
        """The train state stays resident while the rollout's largest program runs beside it."""
        return self.param_bytes_per_device + self.optimizer_bytes_per_device + \
            self.rollout.peak

    @property
    def fits(self) -> bool | None:
        if not self.hbm_bytes:
            return None
        return max(self.total_bytes_per_device, self.rollout_bytes_per_device) <= self.hbm_bytes


def _shard_factor(spec, mesh: Mesh) -> int:
    factor = 1
    for part in spec:
        for axis in (part if isinstance(part, tuple) else (part,)):
            if axis is not None:
                factor *= mesh.shape[axis]
    return factor


def shard_bytes(tree) -> int:
    """Bytes of one device's shard of every leaf (leaves carry ``.sharding``; device 0's share)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape)
        total += int(np.prod(shape, dtype=np.int64)) * jnp.dtype(leaf.dtype).itemsize
    return total


def step_shape(cfg: Config) -> tuple[int, int, int]:
    """``(rows, micro_batches, seq_len)`` of one train step, as ``RLTrainer`` computes them."""
    rc = cfg.rollout
    rows_all = rc.prompts_per_step * rc.group_size
    if rows_all % cfg.train.mini_batches:
        raise ConfigError(f"rollout batch {rows_all} rows does not split into "
                          f"config.train.mini_batches={cfg.train.mini_batches}")
    rows = rows_all // cfg.train.mini_batches
    micro = cfg.train.micro_batch_size
    if micro and rows % micro:
        raise ConfigError(f"config.train.micro_batch_size={micro} does not divide the {rows} "
                          "rows of a mini-batch")
    return rows, (rows // micro if micro else 1), round_up(rc.max_cache_len, rc.length_bucket)


def abstract_batch(rows: int, seq_len: int, with_reference: bool) -> TrainBatch:
    """The RL step's input as ``jax.ShapeDtypeStruct`` (dtypes as ``RLTrainer.prepare`` makes)."""

    def arr(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype)

    bt = (rows, seq_len)
    return TrainBatch(tokens_BT=arr(bt, jnp.int32), attn_mask_BT=arr(bt, jnp.int32),
                      loss_mask_BT=arr(bt, jnp.float32), old_logp_BT=arr(bt, jnp.float32),
                      advantages_BT=arr(bt, jnp.float32), mode_B=arr((rows,), jnp.float32),
                      ref_logp_BT=arr(bt, jnp.float32) if with_reference else None)


def lower_step(cfg: Config, mesh: Mesh, model_cfg: ModelConfig | None = None):
    """``(jitted_step, abstract_state, abstract_batch)`` of the RL train step for ``cfg`` on
    ``mesh``: the same builder, loss, shardings and donation as ``RLTrainer._train``."""
    model_cfg = model_cfg or cfg.model
    tx, schedule = make_optimizer(cfg.optim, cfg.train.steps)
    recipe = make_recipe(cfg.rl, group_size=cfg.rollout.group_size,
                         max_new_tokens=cfg.rollout.max_new_tokens)
    rows, micro, seq_len = step_shape(cfg)
    policy, state = abstract_state(model_cfg, tx, mesh, cfg.train.seed, remat=cfg.train.remat)
    batch = abstract_batch(rows, seq_len, recipe.needs_reference)
    head = target_head(cfg)
    fn = build_step(policy, tx, rl_loss_fn(recipe, head), micro_batches=micro,
                    update_beta=recipe.update_beta, schedule=schedule,
                    block_bytes=head.block_bytes())
    step = jit_step(fn, state, mesh, batch)
    return getattr(step, "jitted", step), state, batch, policy


def compile_step(cfg: Config, mesh: Mesh, model_cfg: ModelConfig | None = None):
    """Lowers and compiles the train step; returns ``(StepMemory, seconds)``."""
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
        jitted, state, batch, _ = lower_step(cfg, mesh, model_cfg)
        compiled = jitted.lower(state, batch).compile()
    return StepMemory.of(compiled), time.perf_counter() - t0


def _weights_table(model_cfg: ModelConfig, mesh: Mesh) -> tuple[list[WeightPlan], int]:
    abstract = nnx.eval_shape(lambda: _decoder(model_cfg))
    state = nnx.state(abstract, nnx.Param)
    shardings = named_shardings(state, mesh)
    flat = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
    weights, num_params = [], 0
    for (_, var), (name, sharding) in zip(flat, shardings.items(), strict=True):
        value = var.get_value()
        n = int(np.prod(value.shape))
        num_params += n
        per_dev = n * jnp.dtype(value.dtype).itemsize // _shard_factor(sharding.spec, mesh)
        weights.append(WeightPlan(name, tuple(value.shape), str(value.dtype), str(sharding.spec),
                                  per_dev))
    return weights, num_params


def _decoder(model_cfg: ModelConfig) -> Decoder:
    return Decoder(model_cfg, nnx.Rngs(params=0))


def _compute_dtype(policy, params) -> str:
    """The dtype the model's hidden states really have (a layer that promotes to fp32 shows)."""
    tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    out = jax.eval_shape(lambda p, t: policy.model(p).hidden(t), params, tokens)
    return str(out.dtype)


def _attention_kernel(cfg: Config, mesh: Mesh, rows: int, seq_len: int) -> str:
    """The kernel ``model.attention`` resolves to in this compile (``auto`` depends on the
    backend: splash on TPU, cuDNN on GPU, XLA on CPU)."""
    m = cfg.model
    resolve = getattr(layers_lib, "resolve_attention", None)
    if resolve is None or m.attention == "reference":
        return m.attention
    q = jax.ShapeDtypeStruct((rows, seq_len, m.num_heads, m.resolved_head_dim),
                             DTYPES[m.dtype])
    with jax.set_mesh(mesh):
        return resolve(m.attention, q, m.num_kv_heads)


def compile_rollout(cfg: Config, mesh: Mesh, policy, params) -> tuple[RolloutMemory, float]:
    """Compiles the rollout's two largest programs from abstract shapes (the trainer's abstract
    ``params`` resharded into the decode layout); returns their memory and the seconds taken."""
    t0 = time.perf_counter()
    rc, m = cfg.rollout, cfg.model
    layout = RolloutLayout(mesh)
    recipe = make_recipe(cfg.rl, group_size=rc.group_size, max_new_tokens=rc.max_new_tokens)
    rows = rollout_rows(recipe, rc.prompts_per_step, rc.group_size)  # as run_rl sizes it
    shapes = RolloutShapes.from_config(rc, batch=slot_count(
        rc, rows, layout.row_shards, default_slots=rc.prompts_per_step * rc.group_size))
    compiled = CompiledRollout(policy.model, shapes, eos_ids=[0], stop_sequences=[[1, 2]],
                               sampling=SamplingParams(), layout=layout)
    p = abstract_decode_params(params, layout, DTYPES[m.dtype])
    b, cache_len = shapes.batch, shapes.cache_len

    def arr(shape, dtype, sharding):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    rows = layout.rows
    k_spec, v_spec, len_spec = layout.cache_specs(m.num_kv_heads)
    named = functools.partial(NamedSharding, mesh)
    kv, hd, dt = m.num_kv_heads, m.resolved_head_dim, DTYPES[m.dtype]
    cache = KVCache(tuple(arr((b, kv, hd, cache_len), dt, named(k_spec))
                          for _ in range(m.num_layers)),
                    tuple(arr((b, kv, cache_len, hd), dt, named(v_spec))
                          for _ in range(m.num_layers)),
                    arr((b,), jnp.int32, named(len_spec)))
    last = arr((b, m.vocab_size), jnp.float32, rows(2))
    seed = arr((2,), jnp.uint32, layout.replicated())
    with jax.set_mesh(mesh):
        decode = compiled.decode_segment.lower(
            p, cache, last, seed, arr((b,), jnp.uint32, rows(1)), arr((b,), jnp.uint32, rows(1)),
            arr((b,), jnp.bool_, rows(1)), arr((b,), jnp.int32, rows(1)),
            arr((b, compiled.window), jnp.int32, rows(2)), np.int32(1),
            kv_len=cache_len).compile()
        width = shapes.extend_len
        append = compiled.append.lower(
            p, cache, last, arr((b,), jnp.int32, rows(1)), arr((b, width), jnp.int32, rows(2)),
            arr((b,), jnp.int32, rows(1)), arr((b,), jnp.bool_, rows(1)),
            kv_len=cache_len).compile()
    memory = RolloutMemory(slots=b, cache_len=cache_len, decode_param_bytes=shard_bytes(p),
                           kv_cache_bytes=shard_bytes(cache), decode=StepMemory.of(decode),
                           append=StepMemory.of(append))
    return memory, time.perf_counter() - t0


def make_plan(cfg: Config, mesh: Mesh) -> Plan:
    """Compiles the RL train step of ``cfg`` on ``mesh`` (abstract shapes only) and collects
    XLA's per-device memory, the exact sharded sizes of params / optimizer state / batch, the
    rollout KV-cache estimate, the weights table and warnings."""
    m = cfg.model
    check_heads_fit_mesh(m, mesh)
    rows, micro, seq_len = step_shape(cfg)
    check_batch_divisible(rows, mesh, "config: rows per train step (prompts_per_step*group_size/"
                          "train.mini_batches)")
    if micro > 1:
        check_batch_divisible(rows // micro, mesh, "config.train.micro_batch_size")
    _, state, batch, policy = lower_step(cfg, mesh)
    weights, num_params = _weights_table(m, mesh)
    batch_sh = jax.tree.map(lambda v: jax.ShapeDtypeStruct(
        v.shape, v.dtype, sharding=batch_sharding(mesh, v.ndim)), batch)

    k = cfg.plan.slice_layers
    layers = (k, 2 * k) if k and 2 * k < m.num_layers else (m.num_layers,)
    mems, seconds = [], 0.0
    for n in layers:
        mem, s = compile_step(cfg, mesh, dataclasses.replace(m, num_layers=n))
        mems.append(mem)
        seconds += s
    step = mems[0] if len(mems) == 1 else mems[0].extrapolate(mems[1], layers[0], layers[1],
                                                               m.num_layers)

    rollout, rollout_s = compile_rollout(cfg, mesh, policy, state["params"])

    compute = _compute_dtype(policy, state["params"])
    warnings = []
    if m.param_dtype == "bfloat16":
        warnings.append(
            "master weights are bf16 (model.param_dtype=bfloat16): an AdamW update smaller than "
            "~|w|·2^-8 rounds away (at lr 1e-6 most updates are lost); set "
            "model.param_dtype=float32 (fp32 masters; compute stays in model.dtype)")
    if compute != m.dtype:
        warnings.append(
            f"model.dtype={m.dtype} but the hidden states are {compute}: a layer promotes the "
            f"activations (e.g. an fp32 norm weight times bf16 activations), so the step computes "
            f"and stores activations in {compute}")
    platform = mesh.devices.flat[0].platform
    if platform == "cpu" and cfg.train.remat != "none" and not m.scan_layers:
        warnings.append(
            f"train.remat={cfg.train.remat} with an unrolled layer loop: XLA:CPU removes the "
            "optimization barriers jax.checkpoint relies on, so this CPU compile keeps every "
            "layer's activations and the temp figure ignores remat (TPU/GPU compiles honour it); "
            "set model.scan_layers=True for a CPU plan that shows remat")
    hbm = int(cfg.plan.hbm_gib * GIB)
    if not hbm:
        stats = getattr(mesh.devices.flat[0], "memory_stats", lambda: None)()
        if stats and stats.get("bytes_limit") and mesh.devices.flat[0].platform != "cpu":
            hbm = int(stats["bytes_limit"])
    return Plan(
        mesh_shape=dict(mesh.shape), num_params=num_params, weights=weights,
        param_bytes_per_device=shard_bytes(state["params"]),
        optimizer_bytes_per_device=shard_bytes(state["opt_state"]),
        batch_bytes_per_device=shard_bytes(batch_sh), step=step, compiled_layers=layers,
        num_layers=m.num_layers, rows=rows, micro_batches=micro, seq_len=seq_len,
        rollout=rollout, hbm_bytes=hbm, compile_s=seconds, rollout_compile_s=rollout_s,
        platform=platform, compute_dtype=compute,
        attention=_attention_kernel(cfg, mesh, rows // micro, seq_len), warnings=warnings,
        logit_head=_logit_head(cfg, mesh, rows, seq_len, micro))


def target_head(cfg: Config) -> LogitHead:
    """The head and block budget of the run being planned. With no budget set
    (``train.logit_block_mib=0``) and a fit verdict asked for (``plan.hbm_gib``), the plan stands
    for an accelerator run although it compiles on CPU: the accelerator's budget, not XLA:CPU's
    cache-sized one (which would cut the step into many small row groups and chunks)."""
    head = LogitHead.from_config(cfg)
    if not head.block_mib and cfg.plan.hbm_gib:
        head = dataclasses.replace(head, block_mib=ACCEL_BLOCK_MIB)
    return head


def _logit_head(cfg: Config, mesh: Mesh, rows: int, seq_len: int, micro: int = 1) -> str:
    """The head path the step takes (``train.logit_head``, chosen from one micro-batch's shapes
    on one device) and the row groups the step computes in (``forward_groups``): e.g.
    ``auto -> chunked (8 positions per chunk, …); block budget 8 MiB; 8 row groups``."""
    head = target_head(cfg)
    shards = int(mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1))
    groups = forward_groups(rows, seq_len, activation_width(cfg.model, seq_len),
                            head.block_bytes(), micro, shards)
    with jax.set_mesh(mesh):
        full, chunk = head.resolve(rows // groups, seq_len - 1, cfg.model.vocab_size)
    detail = ("full (whole T, logits kept" if full else
              f"chunked ({chunk} positions per chunk, logits recomputed in the backward pass")
    return (f"{head.path} -> {detail}); block budget {head.block_bytes() // 2 ** 20} MiB; "
            f"the step computes in {groups} row group(s) of {rows // groups}")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def format_plan(cfg: Config, plan: Plan, max_rows: int = 40) -> str:
    m = cfg.model
    rc = cfg.rollout
    if plan.extrapolated:
        how = (f"compiled {plan.compiled_layers[0]}- and {plan.compiled_layers[1]}-layer slices, "
               f"extrapolated linearly per layer to {plan.num_layers} layers")
    else:
        how = f"compiled all {plan.num_layers} layers"
    s, r = plan.step, plan.rollout
    lines = [
        f"config: {cfg.name}  ({m.architecture}, {m.num_layers} layers, d={m.hidden_size}, "
        f"vocab={m.vocab_size}; params {m.param_dtype}, compute {m.dtype})",
        "mesh: " + ", ".join(f"{k}={v}" for k, v in plan.mesh_shape.items())
        + f"  ({int(np.prod(list(plan.mesh_shape.values())))} {plan.platform} devices)",
        f"parameters: {plan.num_params:,} ({plan.num_params / 1e9:.2f} B)",
        f"train step: {plan.rows} rows x {plan.seq_len} tokens per step "
        f"({rc.prompts_per_step} prompts x {rc.group_size} samples / "
        f"{cfg.train.mini_batches} mini-batches), {plan.micro_batches} micro-batch(es), "
        f"recipe {cfg.rl.recipe}",
        f"XLA compile of the real train step on {plan.platform}: {how} "
        f"({plan.compile_s:.0f} s); remat={cfg.train.remat}, scan_layers={m.scan_layers}, "
        f"attention={m.attention} -> {plan.attention}",
        f"logprob/entropy head: train.logit_head={plan.logit_head}",
        "",
        "memory per device (train step, from compiled.memory_analysis()):",
        f"  params             {_fmt_bytes(plan.param_bytes_per_device):>12}",
        f"  optimizer (AdamW)  {_fmt_bytes(plan.optimizer_bytes_per_device):>12}",
        f"  batch              {_fmt_bytes(plan.batch_bytes_per_device):>12}",
        f"  activations+temp   {_fmt_bytes(s.temp):>12}",
        f"  outputs not donated{_fmt_bytes(s.output - s.alias):>12}",
        f"  total (peak)       {_fmt_bytes(s.peak):>12}   = arguments {_fmt_bytes(s.argument)} "
        f"+ outputs {_fmt_bytes(s.output)} - aliased {_fmt_bytes(s.alias)} + temp "
        f"{_fmt_bytes(s.temp)}",
        "",
        f"memory per device (rollout: {r.slots} slots x {r.cache_len} cache positions, compiled "
        f"decode segment and whole-batch append, {plan.rollout_compile_s:.0f} s):",
        f"  decode params      {_fmt_bytes(r.decode_param_bytes):>12}   ({m.dtype}, fsdp/data "
        "splits dropped)",
        f"  KV cache           {_fmt_bytes(r.kv_cache_bytes):>12}",
        f"  decode peak        {_fmt_bytes(r.decode.peak):>12}   (temp {_fmt_bytes(r.decode.temp)})",
        f"  append peak        {_fmt_bytes(r.append.peak):>12}   (temp {_fmt_bytes(r.append.temp)})",
        f"  + resident train state = {_fmt_bytes(plan.rollout_bytes_per_device)}",
    ]
    if plan.hbm_bytes:
        need = max(plan.total_bytes_per_device, plan.rollout_bytes_per_device)
        verdict = "fits" if plan.fits else "does not fit"
        lines.append(f"HBM per device {_fmt_bytes(plan.hbm_bytes)}: {verdict} "
                     f"(needs {_fmt_bytes(need)}, {need / plan.hbm_bytes:.0%} of HBM)")
    else:
        lines.append("no HBM size given (config.plan.hbm_gib): no fit verdict")
    if plan.platform == "cpu":
        lines.append("note: XLA:CPU buffer assignment, an estimate of the TPU/GPU one (fusion, "
                     "layouts and scheduling differ)")
    for w in plan.warnings:
        lines.append(f"WARNING: {w}")
    lines += ["", f"{'weight':<40} {'shape':<18} {'dtype':<9} {'sharding':<28} {'per device':>11}"]
    rows = plan.weights
    # Unscanned layers repeat: show layer 0 in full and collapse the others into one line
    # (scanned layers are single [num_layers, ...] weights and are all shown).
    shown = [w for w in rows if not re.match(r"layers\.\d+\.", w.name)
             or w.name.startswith("layers.0.")]
    for w in shown[:max_rows]:
        lines.append(f"{w.name:<40} {str(w.shape):<18} {w.dtype:<9} {w.spec:<28} "
                     f"{_fmt_bytes(w.bytes_per_device):>11}")
    hidden = len(rows) - len(shown)
    if hidden:
        lines.append(f"... and {hidden} more weights in layers 1..{m.num_layers - 1} "
                     "(same shapes and shardings as layer 0)")
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry (mode=plan)
def _have_devices(n: int) -> bool:
    """Makes JAX see ``n`` devices if it has not started yet (CPU simulation); True when it does."""
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", n)
    return len(jax.devices()) >= n


def run_plan(cfg: Config, argv: list[str] | None = None) -> int:
    """``python -m toolrl_jax.main --config X --config.mode=plan [--config.plan.devices=N]``.

    Prints the plan. With ``plan.devices=N`` and JAX already started on fewer devices, re-runs
    ``argv`` in a fresh process that simulates N CPU devices.
    """
    n = cfg.plan.devices
    if n and not _have_devices(n):
        if argv is None:
            raise ConfigError(f"config.plan.devices={n}: JAX already runs on {len(jax.devices())} "
                              f"devices; start with JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES={n}")
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(n)}
        return subprocess.call([sys.executable, "-m", "toolrl_jax.main", *argv], env=env)
    devices = jax.devices()[:n] if n else jax.devices()
    mesh = make_mesh(cfg.mesh, devices)
    print(format_plan(cfg, make_plan(cfg, mesh)), flush=True)
    return 0
