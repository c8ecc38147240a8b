"""Pure, jitted train steps: ``(state, batch) -> (state, metrics)``.

One builder serves SFT and RL: a *loss function* maps ``(model, micro_batch, beta_long)`` to
``(loss_sum, denom, metric_pairs)``; the step accumulates ``grad(loss_sum)``, ``denom`` and every
``(sum, count)`` metric pair over micro-batches with ``lax.scan``, divides once (so micro-batching
and multi-host reduction are exact), applies AdamW, and updates AutoTool's ``beta_long`` through
the recipe. The step is jitted once with explicit in/out shardings and donates the old state.

Batches are typed pytrees: :class:`toolrl_jax.scoring.arrays.SFTBatch` for SFT,
:class:`toolrl_jax.train.batch.TrainBatch` for RL. Arrays are aligned to tokens:
``old_logp_BT[b, t]`` is the sampler's logprob of ``tokens_BT[b, t]``; logits at position t−1
score token t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl_jax.rl.entropy import choose_head, hidden_to_logp, hidden_to_logp_entropy
from toolrl_jax.sharding import batch_sharding, batch_spec
from toolrl_jax.train.state import Policy, TrainState, state_sharding_tree

Pair = tuple[jax.Array, jax.Array]
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array, dict[str, Pair]]]


# Default fp32 logits block per device (train.logit_block_mib = 0). On XLA:CPU blocks that stay
# in cache won: at 64 rows × 95 positions × vocab 4096 the head's forward + backward took 0.43 s
# in 8-position chunks (8 MiB blocks), 0.75 s with the whole 100 MiB block kept (measured with
# benchmarks/grpo_step.py's shapes). Accelerators stream HBM fast enough that the full block's
# saved recomputation wins whenever it fits.
CPU_BLOCK_MIB, ACCEL_BLOCK_MIB = 8, 1024
_FORCE = {"auto": None, "full": True, "chunked": False}  # train.logit_head -> choose_head


@dataclasses.dataclass(frozen=True)
class LogitHead:
    """How the log-prob / entropy head runs (``train.logit_*``, ``rl.vocab_chunk``).

    ``chunk``: most positions per T-chunk; ``path``: ``auto`` / ``full`` / ``chunked``
    (:func:`toolrl_jax.rl.entropy.choose_head`); ``block_mib``: fp32 logits per block and
    device, 0 = by backend.
    """

    chunk: int = 256
    vocab_chunk: int = 0
    path: str = "auto"
    block_mib: int = 0

    @classmethod
    def from_config(cls, cfg) -> LogitHead:
        return cls(chunk=cfg.train.logit_chunk, vocab_chunk=cfg.rl.vocab_chunk,
                   path=cfg.train.logit_head, block_mib=cfg.train.logit_block_mib)

    def block_bytes(self) -> int:
        mib = self.block_mib or (CPU_BLOCK_MIB if jax.default_backend() == "cpu"
                                 else ACCEL_BLOCK_MIB)
        return mib * 2 ** 20

    def resolve(self, rows: int, positions: int, vocab: int) -> tuple[bool, int]:
        """``(full, chunk)`` for ``rows`` global rows (divided over the mesh's row shards)."""
        if self.path not in _FORCE:
            raise ValueError(f"logit head path {self.path!r} is not one of {list(_FORCE)}")
        return choose_head(_rows_per_device(rows), positions, vocab, self.block_bytes(),
                           self.chunk, _FORCE[self.path])


def activation_width(model_cfg, positions: int) -> int:
    """fp32 values per position of a layer's widest activation: the fused gate/up output
    (2 × intermediate) or one row's attention scores (heads × positions)."""
    return max(2 * model_cfg.intermediate_size, model_cfg.num_heads * positions)


def _as_head(head: int | LogitHead, vocab_chunk: int = 0) -> LogitHead:
    return head if isinstance(head, LogitHead) else LogitHead(chunk=head, vocab_chunk=vocab_chunk)


def _row_shards() -> int:
    """Devices the rows are split over in the context mesh: (data, fsdp)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    return sizes.get("data", 1) * sizes.get("fsdp", 1)


def _rows_per_device(rows: int) -> int:
    """Rows one device holds when ``rows`` are split over the context mesh's (data, fsdp)."""
    return -(-rows // _row_shards())


def forward_groups(rows: int, positions: int, width: int, block_bytes: int, min_groups: int,
                   shards: int = 1) -> int:
    """Row groups of a forward-only pass (reference / old log-probs) over ``rows`` rows.

    At least ``min_groups`` (the step's micro-batching, which bounds activation memory); more
    while one device's widest activation of a group — ``[rows/(groups·shards), positions,
    width]`` fp32 — exceeds ``block_bytes``. Why: on XLA:CPU a layer whose activations stay in
    cache runs much faster than one that streams them through memory (the benchmark shapes'
    reference pass, 64 rows × 96 positions with a 2048-wide gate/up output: 8 groups of 8 rows
    0.74 s against 1.0 s in one), while on accelerators the backend budget (1 GiB) leaves
    realistic batches whole. Groups divide the rows and keep every device's share equal; when
    none fits, one row per device per group.
    """
    valid = [g for g in range(max(min_groups, 1), rows + 1)
             if rows % g == 0 and (rows // g) % shards == 0]
    if not valid:
        return max(min_groups, 1)
    for g in valid:
        if rows // (g * shards) * positions * width * 4 <= block_bytes:
            return g
    return valid[-1]


def token_logp_entropy(model, batch, chunk: int | LogitHead,
                       vocab_chunk: int = 0) -> tuple[jax.Array, jax.Array]:
    """Current-policy ``(logp, entropy)`` for tokens 1..T−1, ``[B, T−1]``, on the head path
    :meth:`LogitHead.resolve` picks from the shapes (an int ``chunk`` is the most positions per
    T-chunk, with ``vocab_chunk``)."""
    head = _as_head(chunk, vocab_chunk)
    hidden = model.hidden(batch.tokens_BT, batch.attn_mask_BT)
    w = model.lm_head_weight()
    full, chunk = head.resolve(hidden.shape[0], hidden.shape[1] - 1, w.shape[1])
    return hidden_to_logp_entropy(hidden[:, :-1], w, batch.tokens_BT[:, 1:], chunk=chunk,
                                  vocab_chunk=head.vocab_chunk, full=full)


def _merge_micro(x_nR, n: int):
    """Inverse of :func:`_split_micro`: ``[n, B/n, ...]`` (strided rows) → ``[B, ...]``."""
    return x_nR.swapaxes(0, 1).reshape(x_nR.shape[0] * x_nR.shape[1], *x_nR.shape[2:])


def sequence_logp(model, batch, *, micro_batches: int, chunk: int | LogitHead,
                  vocab_chunk: int = 0):
    """Log-probs of ``batch.tokens_BT`` under ``model``, aligned to tokens (``[B, T]``, position 0
    is 0), computed ``micro_batches`` row groups at a time (``lax.map``: one group's activations
    live at once, exactly like the train step's micro-batches), on the head path the shapes pick.

    For the frozen reference policy (KL) and for recomputing the PPO "old" log-probs with the
    trainer's own forward (``rl.recompute_old_logp``): log-probs only (no entropy, no gradient).
    Only the two row arrays it reads are split. ``micro_batches`` is a floor: with a
    :class:`LogitHead` the groups grow until one group's widest activation fits its block
    budget (:func:`forward_groups`); the log-probs do not depend on the grouping.
    """
    head = _as_head(chunk, vocab_chunk)
    rows = (batch.tokens_BT, batch.attn_mask_BT)
    if isinstance(chunk, LogitHead):
        b, t = batch.tokens_BT.shape
        micro_batches = forward_groups(b, t, activation_width(model.cfg, t),
                                       head.block_bytes(), micro_batches, _row_shards())

    def one(mb):
        tokens, attn = mb
        hidden = model.hidden(tokens, attn)
        w = model.lm_head_weight()
        full, c = head.resolve(hidden.shape[0], hidden.shape[1] - 1, w.shape[1])
        return hidden_to_logp(hidden[:, :-1], w, tokens[:, 1:], chunk=c,
                              vocab_chunk=head.vocab_chunk, full=full)

    if micro_batches == 1:
        logp = one(rows)
    else:
        logp = _merge_micro(jax.lax.map(one, _split_micro(rows, micro_batches)), micro_batches)
    return jnp.pad(logp, ((0, 0), (1, 0)))


def sft_loss_fn(chunk: int) -> LossFn:
    """Token-mean negative log-likelihood over ``loss_mask_BT`` (model tokens only)."""

    def loss(model, batch, beta_long):
        logp, ent = token_logp_entropy(model, batch, chunk)
        mask = batch.loss_mask_BT[:, 1:].astype(jnp.float32)
        on = mask > 0
        n = jnp.sum(mask)
        # where, not multiply: a masked-out position may hold logp = -inf (vocab masks).
        nll = jnp.sum(jnp.where(on, -logp * mask, 0.0))
        metrics = {
            "sft/nll": (nll, n),
            "policy/entropy": (jnp.sum(jnp.where(on, jax.lax.stop_gradient(ent) * mask, 0.0)), n),
            "sft/token_acc": (jnp.sum(jnp.where(on, (logp > jnp.log(0.5)) * mask, 0.0)), n),
        }
        return nll, jax.lax.stop_gradient(n), metrics

    return loss


def rl_loss_fn(recipe, chunk: int | LogitHead) -> LossFn:
    """The recipe's policy loss on the current policy's logprobs and entropies (``chunk``: a
    :class:`LogitHead`, or just the T-chunk with the recipe's ``vocab_chunk``)."""
    head = _as_head(chunk, recipe.config.vocab_chunk)

    def loss(model, batch, beta_long):
        logp, ent = token_logp_entropy(model, batch, head)
        ref = batch.ref_logp_BT
        loss_sum, denom, metrics = recipe.loss(
            logp, ent, batch.old_logp_BT[:, 1:], batch.advantages_BT[:, 1:],
            batch.loss_mask_BT[:, 1:], ref_logp_BT=None if ref is None else ref[:, 1:],
            short_mode_B=batch.mode_B, beta_long=beta_long)
        return loss_sum, jax.lax.stop_gradient(denom), metrics

    return loss


def _split_micro(batch, n: int):
    """``[B, ...] -> [n, B/n, ...]`` with micro-batch i = rows i, i+n, i+2n, …

    Strided, not in blocks: the rows are sharded over (data, fsdp) in contiguous blocks, one per
    device, so a block-cut micro-batch would live on 1/n of the devices (the others idle, and
    GSPMD all-gathers the batch to rebalance it). Strided, every micro-batch takes B/(n·devices)
    rows from every device's block: each micro-step keeps all devices busy on rows they already
    hold. The sum over micro-batches — hence the step — does not depend on how rows are grouped.
    """
    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {n} micro-batches")
        out = x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)
        if jax.sharding.get_abstract_mesh().empty:
            return out
        return jax.lax.with_sharding_constraint(out, batch_spec(out.ndim, leading=1))

    return jax.tree.map(split, batch)


def build_step(policy: Policy, tx: optax.GradientTransformation, loss_fn: LossFn, *,
               micro_batches: int, update_beta: Callable | None = None, schedule=None,
               block_bytes: int = 0):
    """The pure step function (not jitted): ``(state, batch) -> (state, metrics)``.

    ``block_bytes`` > 0: the rows are cut into more (never fewer) than ``micro_batches`` groups
    when one group's widest activation would exceed it (:func:`forward_groups`, decided from the
    batch's shape at trace time). The step sums gradients and metric pairs over groups and
    divides once, so the grouping changes time and memory, not the result; the configured
    micro-batches keep their meaning elsewhere (TAO-RL's per-micro-batch shaping statistics).
    """

    def step(state: TrainState, batch):
        params = state["params"]
        beta_long = state["beta_long"]
        groups = micro_batches
        if block_bytes:
            rows, t = batch.tokens_BT.shape
            groups = forward_groups(rows, t, activation_width(policy.model(params).cfg, t),
                                    block_bytes, micro_batches, _row_shards())

        def grads_of(mb):
            def objective(p):
                loss_sum, denom, metrics = loss_fn(policy.model(p), mb, beta_long)
                return loss_sum, (denom, metrics)

            (loss_sum, (denom, metrics)), grads = jax.value_and_grad(objective,
                                                                      has_aux=True)(params)
            # The objective itself, as a (sum, denominator) pair like every other metric.
            return grads, denom, {**metrics, "train/loss": (loss_sum, denom)}

        if groups == 1:
            grads, denom, metrics = grads_of(batch)
        else:
            micro = _split_micro(batch, groups)
            first = jax.tree.map(lambda x: x[0], micro)
            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grads_of, first))

            def body(acc, mb):
                return jax.tree.map(jnp.add, acc, grads_of(mb)), None

            (grads, denom, metrics), _ = jax.lax.scan(body, zeros, micro)
        denom = jnp.maximum(denom, 1e-8)  # an all-masked batch gives zero gradient, not NaN
        grads = jax.tree.map(lambda g: g / denom, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        out = {name: s / jnp.maximum(c, 1e-8) for name, (s, c) in metrics.items()}
        out["train/grad_norm"] = optax.tree.norm(grads)
        out["train/tokens"] = denom
        if schedule is not None:
            out["train/lr"] = schedule(state["step"])
        new_beta = update_beta(beta_long, metrics) if update_beta is not None else beta_long
        out["autotool/beta_long"] = new_beta
        new_state = {"params": new_params, "opt_state": opt_state, "step": state["step"] + 1,
                     "beta_long": jnp.asarray(new_beta, jnp.float32)}
        return new_state, out

    return step


def place_batch(batch, shardings):
    """Host (NumPy) batch → global jax.Array values with the step's input shardings.

    On a pod each process builds only the shards its own devices hold
    (``make_array_from_callback`` asks for exactly those index ranges), so a host never
    transfers rows another host trains on; passing NumPy to a jit with sharded inputs is refused
    by JAX as soon as there are two processes. Every process must pass the same global batch.
    """
    def one(x, sharding):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, batch, shardings)


def jit_step(step_fn, state: TrainState, mesh: Mesh, batch_example):
    """Jits ``step_fn`` once with explicit shardings: state as it lives, batch rows split over
    (data, fsdp), metrics replicated; the old state is donated.

    Returns ``step(state, host_batch) -> (state, metrics)``; the host batch is placed with
    :func:`place_batch` (``step.jitted`` is the jitted function itself, e.g. to lower it).
    """
    state_sh = state_sharding_tree(state)
    batch_sh = jax.tree.map(lambda v: batch_sharding(mesh, v.ndim), batch_example)
    jitted = jax.jit(step_fn, in_shardings=(state_sh, batch_sh),
                     out_shardings=(state_sh, NamedSharding(mesh, PartitionSpec())),
                     donate_argnums=(0,))

    def step(state, batch):
        return jitted(state, place_batch(batch, batch_sh))

    step.jitted = jitted
    step.batch_shardings = batch_sh
    return step
