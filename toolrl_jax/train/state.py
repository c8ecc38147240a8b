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


def create_state(model: Decoder, tx: optax.GradientTransformation, mesh: Mesh,
                 beta_long: float = 0.0) -> tuple[Policy, TrainState]:
    """Splits ``model`` and builds the train state with every leaf placed on ``mesh``."""
    graphdef, params_state = nnx.split(model)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params_state)
    shardings = nnx.to_pure_dict(state_shardings(params_state, mesh))
    params = jax.device_put(nnx.to_pure_dict(params_state), shardings)
    replicated = NamedSharding(mesh, PartitionSpec())
    # jit places the optimiser moments exactly like the params they mirror (GSPMD propagation).
    opt_state = jax.jit(tx.init)(params)
    state = {
        "params": params,
        "opt_state": opt_state,
        "step": jax.device_put(jnp.zeros((), jnp.int32), replicated),
        "beta_long": jax.device_put(jnp.asarray(beta_long, jnp.float32), replicated),
    }
    return Policy(graphdef, template, model.cfg), state


def state_sharding_tree(state: TrainState):
    """The shardings of a live state (used as the train step's in/out shardings)."""
    return jax.tree.map(lambda x: x.sharding, state)
