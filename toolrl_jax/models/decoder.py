"""Qwen2/Llama-family decoder in flax.nnx with a per-row-length KV cache.

Entry points (all pure given the module's parameters; jit them via ``nnx.split``/``nnx.merge``):

* ``__call__(tokens_BT, attn_mask_BT)`` — full causal forward over right-padded rows → logits.
* ``hidden(tokens_BT, attn_mask_BT)`` — the same, stopping at the final norm (for chunked heads).
* ``extend(tokens_BT, new_lens_B, cache)`` — append up to T tokens per row to ``cache``; row b
  appends ``new_lens_B[b]`` tokens at cache positions ``cache.lengths[b] …``. Prefill is extend on
  an empty cache and a decode step is extend with T = 1, so the three share one code path.

Cache index == RoPE position: a row's tokens are contiguous from position 0, so a row's new tokens
get their own positions, and keys at index >= the row's length (padding, stale writes) are never
attended to.

Three knobs shape the full forward (they change neither the math nor the cached path):

* ``cfg.attention`` — the attention kernel (:func:`toolrl_jax.models.layers.causal_attention`).
* ``cfg.scan_layers`` — the layers' params are stacked on a leading ``layers`` axis (one
  :class:`DecoderLayer` whose every param is ``[num_layers, …]``) and the full forward is one
  ``lax.scan`` over them, so XLA compiles one layer body whatever the depth.
* ``Decoder.remat`` — ``"none" | "full" | "save_dots"``: ``jax.checkpoint`` around each layer's
  forward. It is an attribute of the module, not a ModelConfig field: it is a training-memory
  choice (``train.remat``) that neither the HF config nor the rollout has any use for. Being a
  plain attribute it lives in the graphdef, so the trainer sets ``model.remat = cfg.train.remat``
  before ``nnx.split`` and every module rebuilt from that graphdef (the train step's) has it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from toolrl_jax.config import ModelConfig
from toolrl_jax.models.layers import (
    DTYPES,
    MLP,
    Attention,
    RMSNorm,
    at_least_fp32,
    causal_attention,
    grouped_attention,
    param,
    require_x64,
    rope_inv_freq,
    rope_tables,
)
from toolrl_jax.sharding import constrain_rows

# Decoder.remat → the jax.checkpoint policy of each layer (None: no checkpoint at all).
# "full" saves nothing inside a layer (only its input, the scan carry / loop value, is kept);
# "save_dots" keeps the outputs of matmuls without batch dims (the q/k/v, o, gate/up and down
# projections) and recomputes norms, RoPE, attention and activations in the backward pass.
# Use it with scan_layers: under scan the backward recomputes one layer per iteration by
# construction, while in an unrolled loop it depends on XLA's scheduler not running every
# layer's recomputation early. XLA:CPU does run it early (4 layers, T = 256: temp memory
# 163 -> 155 MiB unscanned vs 171 -> 51 MiB scanned; tests/models/test_remat.py prints both).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Per-layer keys ``[B, KV, hd, L_max]``, values ``[B, KV, L_max, hd]``, row lengths ``[B]``.

    One array per layer (not one stacked array) so a decode step's scatter updates each layer's
    buffer in place inside ``lax.while_loop`` instead of rewriting a stacked slab. Heads come
    before positions so attention contracts the cache as stored (with ``[B, L, KV, hd]`` XLA
    transposed the whole cache of every layer on every decode step: 5x slower at L = 208), and
    keys are stored transposed so both attention matmuls are plain ``[M, K] x [K, N]`` products:
    the CPU matmul kernels ran q·kᵀ against position-major keys ~2x slower than p·v (measured).
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    lengths: jax.Array  # int32 [B]

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> KVCache:
        dtype = dtype or DTYPES[cfg.dtype]
        kv, hd = cfg.num_kv_heads, cfg.resolved_head_dim
        return cls(tuple(jnp.zeros((batch, kv, hd, max_len), dtype) for _ in range(cfg.num_layers)),
                   tuple(jnp.zeros((batch, kv, max_len, hd), dtype) for _ in range(cfg.num_layers)),
                   jnp.zeros((batch,), jnp.int32))

    @property
    def max_len(self) -> int:
        return self.v[0].shape[2]

    def prefix(self, width: int) -> KVCache:
        """The first ``width`` positions of every layer (a copy; lengths unchanged)."""
        if width == self.max_len:
            return self
        return KVCache(tuple(k[..., :width] for k in self.k),
                       tuple(v[:, :, :width] for v in self.v), self.lengths)

    def with_prefix(self, prefix: KVCache) -> KVCache:
        """This cache with its first positions replaced by ``prefix`` (in place when donated)."""
        if prefix.max_len == self.max_len:
            return prefix
        at = (0, 0, 0, 0)
        return KVCache(
            tuple(jax.lax.dynamic_update_slice(f, w, at) for f, w in zip(self.k, prefix.k)),
            tuple(jax.lax.dynamic_update_slice(f, w, at) for f, w in zip(self.v, prefix.v)),
            prefix.lengths)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        pdt = DTYPES[cfg.param_dtype]
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x_BTD, rope, attend):
        """One pre-norm block; ``attend(q, k, v) -> [B, T, H, hd]`` is the attention kernel."""
        q, k, v = self.self_attn.project_qkv(self.input_layernorm(x_BTD), rope)
        x_BTD = x_BTD + self.self_attn.output(attend(q, k, v))
        return x_BTD + self.mlp(self.post_attention_layernorm(x_BTD))


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def stack_layers(layers: list[DecoderLayer]) -> DecoderLayer:
    """One DecoderLayer whose params are the given layers' params stacked on a new leading axis,
    with the logical axis name ``"layers"`` prepended (replicated by ``sharding.LOGICAL_RULES``:
    each device holds its shard of every layer, as with separate per-layer arrays).

    Built from per-layer modules (not a vmapped init) so a scanned model initialised from a seed
    has exactly the weights of the unscanned one from the same seed.
    """
    graphdef, _ = nnx.split(layers[0])

    def stack(*vs):
        return vs[0].replace(jnp.stack([v.get_value() for v in vs]),
                             axes=("layers", *vs[0].axes))

    return nnx.merge(graphdef, jax.tree.map(stack, *[nnx.state(layer) for layer in layers],
                                            is_leaf=_is_variable))


class Decoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, remat: str = "none"):
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat={remat!r} is not one of {list(REMAT_POLICIES)}")
        require_x64(cfg)
        self.cfg = cfg
        self.remat = remat
        pdt = DTYPES[cfg.param_dtype]
        self.embed_tokens = param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), pdt,
                                  0.02)
        layers = [DecoderLayer(cfg, rngs) for _ in range(cfg.num_layers)]
        # scan_layers: one DecoderLayer of [L, …] params; otherwise a list of L DecoderLayers.
        self.layers = stack_layers(layers) if cfg.scan_layers else nnx.List(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        if not cfg.tie_embeddings:
            self.lm_head = param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), pdt,
                                 0.02)

    def layer_list(self) -> list[DecoderLayer]:
        """The layers as L modules; with scan_layers, modules over static slices ``[i]`` of the
        stacked params (taken inside the traced program, so XLA sees which slice each matmul
        reads; whether it copies a slice or reads it in place is its choice)."""
        if not self.cfg.scan_layers:
            return list(self.layers)
        graphdef, state = nnx.split(self.layers)
        return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], state))
                for i in range(self.cfg.num_layers)]

    def _inv_freq(self) -> jax.Array:
        # Derived from the config, not stored: it is a compile-time constant, not a parameter.
        c = self.cfg
        return rope_inv_freq(c.resolved_head_dim, c.rope_theta, c.rope_scaling,
                             at_least_fp32(DTYPES[c.dtype]))

    # ------------------------------------------------------------------ heads
    def lm_head_weight(self) -> jax.Array:
        """``[D, V]`` output projection (the transposed embedding when tied)."""
        if self.cfg.tie_embeddings:
            return self.embed_tokens[...].T
        return self.lm_head[...]

    def logits(self, hidden_BTD) -> jax.Array:
        w = self.lm_head_weight()
        return (hidden_BTD @ w.astype(hidden_BTD.dtype)).astype(at_least_fp32(hidden_BTD.dtype))

    def _embed(self, tokens_BT):
        return jnp.take(self.embed_tokens[...], tokens_BT, axis=0).astype(DTYPES[self.cfg.dtype])

    # ------------------------------------------------------------------ full forward
    def hidden(self, tokens_BT, attn_mask_BT=None, positions_BT=None, *,
               remat: str | None = None) -> jax.Array:
        """Final-norm hidden states ``[B, T, D]`` for right-padded rows (causal, padding masked).

        ``attn_mask_BT`` (1 on real tokens) must be right padding — a prefix of ones per row —
        for every kernel but ``"reference"`` (the fused kernels take row lengths); padded query
        rows' attention output is zero. ``remat`` overrides :attr:`remat` for this call.
        """
        b, t = tokens_BT.shape
        if attn_mask_BT is None:
            attn_mask_BT = jnp.ones((b, t), bool)
        attn_mask_BT = attn_mask_BT.astype(bool)
        if positions_BT is None:
            positions_BT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        x = self._embed(tokens_BT)
        rope = rope_tables(positions_BT, self._inv_freq())
        if self.cfg.attention == "reference":
            # Today's mask-based path, any mask; padded query rows are masked too, so they give
            # zeros exactly as the fused kernels' padded rows do (their values are never used).
            causal = jnp.tril(jnp.ones((t, t), bool))
            allowed = causal[None] & attn_mask_BT[:, None, :] & attn_mask_BT[:, :, None]

            def attend(q, k, v):
                return grouped_attention(q, k, v, allowed)
        else:
            lengths_B = jnp.sum(attn_mask_BT, axis=1, dtype=jnp.int32)

            def attend(q, k, v):
                return causal_attention(q, k, v, lengths_B, self.cfg.attention)

        mode = self.remat if remat is None else remat
        if mode not in REMAT_POLICIES:
            raise ValueError(f"remat={mode!r} is not one of {list(REMAT_POLICIES)}")
        policy = REMAT_POLICIES[mode]

        def block(graphdef):
            # A pure function of (x, one layer's params) so jax.checkpoint / lax.scan can take
            # it; rope and the attention closure are the same for every layer.
            def run(x_BTD, layer_state):
                x_BTD = constrain_rows(x_BTD)  # rows over (data, fsdp): see sharding.constrain_rows
                return nnx.merge(graphdef, layer_state)(x_BTD, rope, attend)

            if policy is None:
                return run
            # prevent_cse=False under scan: the scan already stops XLA from merging the forward
            # and the recomputation (JAX's recommendation for checkpoint inside scan).
            return jax.checkpoint(run, policy=policy, prevent_cse=not self.cfg.scan_layers)

        if self.cfg.scan_layers:
            graphdef, stacked = nnx.split(self.layers)
            run = block(graphdef)
            x, _ = jax.lax.scan(lambda carry, layer_state: (run(carry, layer_state), None),
                                x, stacked)
        elif policy is None:
            for layer in self.layers:
                x = layer(constrain_rows(x), rope, attend)
        else:
            for layer in self.layers:
                graphdef, state = nnx.split(layer)
                x = block(graphdef)(x, state)
        return self.norm(x)

    def __call__(self, tokens_BT, attn_mask_BT=None, positions_BT=None) -> jax.Array:
        """Logits ``[B, T, V]`` (fp32; float64 for a float64 model)."""
        return self.logits(self.hidden(tokens_BT, attn_mask_BT, positions_BT))

    # ------------------------------------------------------------------ cached generation
    def extend_hidden(self, tokens_BT, new_lens_B, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Appends ``new_lens_B[b]`` tokens of row b at its own cache offset; returns hidden states.

        Tokens at ``t >= new_lens_B[b]`` are padding: their keys are not written (scatter with
        ``mode='drop'`` to an out-of-range index) and their outputs are meaningless.
        """
        b, t = tokens_BT.shape
        max_len = cache.max_len
        offsets_T = jnp.arange(t, dtype=jnp.int32)
        positions_BT = cache.lengths[:, None] + offsets_T[None, :]
        valid_BT = offsets_T[None, :] < new_lens_B[:, None]
        write_idx_BT = jnp.where(valid_BT, positions_BT, max_len)  # out of range => dropped
        rows_B1 = jnp.arange(b)[:, None]
        # Query at position p sees cache slots s <= p; slots beyond the row's new length hold no
        # key yet for valid queries, because s <= p < length + new_len.
        allowed = jnp.arange(max_len)[None, None, :] <= positions_BT[:, :, None]
        x = self._embed(tokens_BT)
        rope = rope_tables(positions_BT, self._inv_freq(), max_position=max_len)
        new_k, new_v = [], []
        # The cached path stays a Python loop over layers with the reference attention kernel:
        # each layer scatters into its own cache array (updated in place inside the rollout's
        # while_loop; a scan would need one stacked cache slab, rewritten per step), and its
        # keys are stored transposed ([B, KV, hd, L], see KVCache) which the fused kernels do
        # not take. With scan_layers the layers are static slices of the stacked params.
        for i, layer in enumerate(self.layer_list()):
            h = layer.input_layernorm(x)
            q, k, v = layer.self_attn.project_qkv(h, rope)
            # Indexing [rows, :, (:,) positions] puts the advanced dims first: updates are
            # [B, T, KV, hd] for the transposed keys as for the values.
            layer_k = cache.k[i].at[rows_B1, :, :, write_idx_BT].set(k.astype(cache.k[i].dtype),
                                                                      mode="drop")
            layer_v = cache.v[i].at[rows_B1, :, write_idx_BT].set(v.astype(cache.v[i].dtype),
                                                                   mode="drop")
            new_k.append(layer_k)
            new_v.append(layer_v)
            x = x + layer.self_attn.output(grouped_attention(q, layer_k, layer_v, allowed,
                                                             kv_layout="cache"))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        # Rows that append nothing keep their length as is: a windowed cache (the rollout reads
        # only a prefix of the full one) may be shorter than a finished row's length.
        new_lens_B = new_lens_B.astype(jnp.int32)
        lengths = jnp.where(new_lens_B > 0, jnp.minimum(cache.lengths + new_lens_B, max_len),
                            cache.lengths)
        return self.norm(x), KVCache(tuple(new_k), tuple(new_v), lengths)

    def extend(self, tokens_BT, new_lens_B, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Like :meth:`extend_hidden` but returns logits ``[B, T, V]`` (as :meth:`__call__`)."""
        hidden, cache = self.extend_hidden(tokens_BT, new_lens_B, cache)
        return self.logits(hidden), cache


def init_decoder(cfg: ModelConfig, seed: int = 0, remat: str = "none") -> Decoder:
    return Decoder(cfg, nnx.Rngs(params=seed), remat=remat)


def init_sharded(cfg: ModelConfig, mesh, seed: int = 0, remat: str = "none") -> Decoder:
    """Creates the model with every parameter born sharded (no full copy on one device).

    ``eval_shape`` gives the abstract state, the rules give its shardings, and a jitted init with
    those ``out_shardings`` materialises each shard where it lives.
    """
    from toolrl_jax.sharding import state_shardings

    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(params=seed), remat=remat))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh)

    @jax.jit
    def make():
        return nnx.split(Decoder(cfg, nnx.Rngs(params=seed)))[1]

    state = jax.jit(make, out_shardings=shardings)()
    return nnx.merge(graphdef, state)
