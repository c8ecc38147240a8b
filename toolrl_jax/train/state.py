"""Train state (params + optimiser + counters), created already sharded, and the optimiser.

The state is a plain dict pytree so jit, orbax and optax all see the same structure:

    {"params": pure dict of arrays (``nnx.to_pure_dict``), "opt_state": optax state,
     "step": int32 [], "beta_long": float32 []  (AutoTool's learnable coefficient)}

Params are kept as a *pure* nested dict (not an nnx ``State``) so optimiser states and checkpoints
are plain pytrees whose layout does not depend on flax internals. The model's graph and an
abstract template live in :class:`Policy`, which rebuilds the module from pure params.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl_jax.config import ModelConfig, OptimConfig
from toolrl_jax.models.decoder import Decoder
from toolrl_jax.sharding import state_shardings
from toolrl_jax.train.checkpoint import from_pure

TrainState = dict[str, Any]


def make_optimizer(cfg: OptimConfig, total_steps: int):
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio``; global-norm clipping.

    Returns ``(tx, schedule)``; the schedule is reported as the learning-rate metric.
    """
    decay = cfg.decay_steps or max(total_steps - cfg.warmup_steps, 1)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.learning_rate,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.warmup_steps + decay,
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts), schedule


@dataclasses.dataclass
class Policy:
    """The static half of a model (graph + abstract param template) plus its config."""

    graphdef: Any
    template: Any  # nnx State of ShapeDtypeStructs
    cfg: ModelConfig

    def model(self, params) -> Decoder:
        """Rebuilds the module from pure params (works under jit: only tracing-time glue)."""
        return nnx.merge(self.graphdef, from_pure(self.template, params))


def opt_state_shardings(tx: optax.GradientTransformation, params, param_shardings, mesh: Mesh):
    """The sharding of every optimiser-state leaf: a param's own for each copy of the param tree
    inside the state (Adam's ``mu`` and ``nu``), replicated for the rest (``count``, scalars).

    ``params`` may be abstract (``jax.ShapeDtypeStruct``): nothing is allocated. Without explicit
    out-shardings ``jax.jit(tx.init)`` returns the moments *replicated* (``zeros_like`` has no data
    dependence on the params, so their sharding does not propagate): 2 × the params' full size on
    every device, 57 GiB per chip for a 7B model in fp32.
    """
    abstract = jax.eval_shape(_init_fp32(tx), params)
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(tx, lambda _, sharding: sharding, abstract, param_shardings,
                                 transform_non_params=lambda _: replicated)


def _init_fp32(tx: optax.GradientTransformation):
    """``tx.init`` on fp32 copies of the params: the moments are fp32 whatever ``param_dtype`` is.

    With bf16 params ``tx.init`` alone would give bf16 moments, which the first update (fp32
    gradients: the step divides them by an fp32 token count) turns into fp32 ones: the state's
    dtypes would change after step 1 (a recompile, a donation mismatch) and the moments would have
    been rounded to bf16 once. fp32 from the start keeps the optimiser math in fp32.
    """

    def init(params):
        return tx.init(jax.tree.map(lambda x: x.astype(jnp.float32), params))

    return init


def init_opt_state(tx: optax.GradientTransformation, params, param_shardings, mesh: Mesh):
    """``tx.init(params)`` in fp32 with every moment born sharded like its param (see
    :func:`opt_state_shardings`)."""
    out = opt_state_shardings(tx, params, param_shardings, mesh)
    return jax.jit(_init_fp32(tx), out_shardings=out)(params)


def abstract_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                   seed: int = 0, remat: str = "none") -> tuple[Policy, TrainState]:
    """The :class:`Policy` and a train state of ``jax.ShapeDtypeStruct`` leaves carrying the
    shardings :func:`create_state` would give them, without allocating a single weight
    (``nnx.eval_shape`` + ``jax.eval_shape``). ``remat`` is set on the module (``Decoder.remat``,
    part of the graphdef) as the trainer sets ``train.remat``. Used by the AOT planner
    (``mode=plan``)."""
    model = nnx.eval_shape(lambda: Decoder(model_cfg, nnx.Rngs(params=seed), remat=remat))
    graphdef, params_state = nnx.split(model)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params_state)
    shardings = nnx.to_pure_dict(state_shardings(params_state, mesh))
    params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          nnx.to_pure_dict(template), shardings)
    opt_sh = opt_state_shardings(tx, params, shardings, mesh)
    opt = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       jax.eval_shape(_init_fp32(tx), params), opt_sh)
    replicated = NamedSharding(mesh, PartitionSpec())
    state = {
        "params": params,
        "opt_state": opt,
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
        "beta_long": jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated),
    }
    return Policy(graphdef, template, model_cfg), state


def create_state(model: Decoder, tx: optax.GradientTransformation, mesh: Mesh,
                 beta_long: float = 0.0) -> tuple[Policy, TrainState]:
    """Splits ``model`` and builds the train state with every leaf placed on ``mesh``.

    Params stay in ``model.cfg.param_dtype`` (fp32 master weights by default; the layers cast
    them to the compute ``dtype``), so gradients and updates are fp32 as well; the AdamW moments
    are fp32 in any case. Each optimiser moment is sharded exactly like the param it mirrors.
    """
    graphdef, params_state = nnx.split(model)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params_state)
    shardings = nnx.to_pure_dict(state_shardings(params_state, mesh))
    params = jax.device_put(nnx.to_pure_dict(params_state), shardings)
    replicated = NamedSharding(mesh, PartitionSpec())
    state = {
        "params": params,
        "opt_state": init_opt_state(tx, params, shardings, mesh),
        "step": jax.device_put(jnp.zeros((), jnp.int32), replicated),
        "beta_long": jax.device_put(jnp.asarray(beta_long, jnp.float32), replicated),
    }
    return Policy(graphdef, template, model.cfg), state


def state_sharding_tree(state: TrainState):
    """The shardings of a live state (used as the train step's in/out shardings)."""
    return jax.tree.map(lambda x: x.sharding, state)
