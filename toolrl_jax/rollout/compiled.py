"""The three compiled rollout functions: prefill, decode segment, extend.

All three take the parameter ``State`` as an argument (not a closure) so a policy update never
recompiles them, and see only the static shapes of :class:`toolrl_jax.buckets.RolloutShapes`.

* ``prefill(params, tokens_BP, lens_B) -> (cache, last_logits_BV)``
* ``decode_segment(params, cache, last_logits_BV, row_keys_B, running_B, budget_B, window_BW,
  kv_len=W)`` runs up to ``segment_len`` steps in one ``lax.while_loop``; a row stops on an EOS
  id, on any stop sequence (multi-token, matched on token ids against the row's last sampled
  tokens), on its token budget, or when the cache is full. The loop exits as soon as no row is
  running.
* ``extend(params, cache, last_logits_BV, tokens_BE, lens_B, kv_len=W)`` appends each row's
  tool-result tokens at its own offset; rows with ``lens_B == 0`` keep their cache and logits.

**Cache windows.** ``kv_len`` (static, one of ``shapes.kv_windows``) is how much of the cache a
call reads and writes: the call works on the cache's first ``kv_len`` positions and writes them
back (in place: the cache is donated). A decode step's cost is dominated by reading the keys and
values it attends over, so attending over the rows' real lengths instead of the whole
preallocated cache is what makes long caches cheap early in a rollout. The caller picks the
smallest window that every *running* row's length plus the call's new tokens fits in; a row that
nonetheless reaches ``kv_len`` pauses (stop code ``RUNNING``) and resumes in the next call.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.buckets import RolloutShapes
from toolrl_jax.models.decoder import KVCache
from toolrl_jax.rollout.sampling import row_step_keys, sample

# Stop codes returned per row by decode_segment.
RUNNING, STOP_EOS, STOP_SEQUENCE, STOP_BUDGET, STOP_CACHE_FULL = 0, 1, 2, 3, 4


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SegmentOutput:
    tokens_BS: jax.Array  # int32; sampled tokens, valid for s < num_tokens_B[b]
    logp_BS: jax.Array  # float32; policy logprob (temperature 1) of each sampled token
    entropy_BS: jax.Array  # float32; policy entropy at each sampled position
    num_tokens_B: jax.Array  # int32
    stop_code_B: jax.Array  # int32; RUNNING / STOP_* above
    window_BW: jax.Array  # int32; each row's last W sampled tokens (for matching across calls)
    cache: KVCache
    last_logits_BV: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _DecodeState:
    """The ``lax.while_loop`` carry of one decode segment (S = ``segment_len`` steps)."""

    step: jax.Array  # int32 []; steps taken
    cache: KVCache  # the window the segment reads and writes
    last_logits_BV: jax.Array  # float32; logits that sample the next token
    tokens_BS: jax.Array  # int32; sampled tokens, row b's first count_B[b] are valid
    logp_BS: jax.Array  # float32
    entropy_BS: jax.Array  # float32
    count_B: jax.Array  # int32; tokens sampled per row
    running_B: jax.Array  # bool; still sampling in this segment
    stop_code_B: jax.Array  # int32; RUNNING / STOP_*
    budget_B: jax.Array  # int32; tokens each row may still sample
    window_BW: jax.Array  # int32; each row's last W sampled tokens (stop-sequence matching)


def _host_readable(x):
    """Replicated over the context mesh (when one is set), so every process can read the value.

    Under a multi-process mesh the params are global arrays sharded across processes and GSPMD
    may shard what comes out of them; what the host engine reads back must be whole on every host.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec())


def _lengths_readable(cache: KVCache) -> KVCache:
    return dataclasses.replace(cache, lengths=_host_readable(cache.lengths))


def stop_sequence_table(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Right-aligned ``[S, W]`` table (−1 padded on the left), lengths ``[S]``, and W."""
    width = max([len(s) for s in sequences] + [1])
    table = np.full((max(len(sequences), 1), width), -1, np.int32)
    lengths = np.zeros((max(len(sequences), 1),), np.int32)
    for i, seq in enumerate(sequences):
        if not seq:
            raise ValueError("empty stop sequence")
        table[i, width - len(seq):] = seq
        lengths[i] = len(seq)
    return table, lengths, width


class CompiledRollout:
    """Holds the jitted functions for one model graph, one set of shapes and stop rules."""

    def __init__(self, model_fn, shapes: RolloutShapes, *, eos_ids: list[int],
                 stop_sequences: list[list[int]], sampling: SamplingParams, pad_id: int = 0):
        # params -> Decoder (e.g. Policy.model, or nnx.merge with a graphdef for nnx States).
        self.model_fn = model_fn
        self.shapes = shapes
        self.sampling = sampling
        self.pad_id = pad_id
        self.eos_ids = jnp.asarray(np.asarray(eos_ids or [-1], np.int32))
        table, lengths, width = stop_sequence_table(stop_sequences)
        self.stop_table = jnp.asarray(table)
        self.stop_lengths = jnp.asarray(lengths)
        self.window = width
        self.has_stops = bool(stop_sequences)
        self.prefill = jax.jit(self._prefill)
        self.extend = jax.jit(self._extend, donate_argnums=(1, 2), static_argnames=("kv_len",))
        self.decode_segment = jax.jit(self._decode_segment, donate_argnums=(1, 2),
                                      static_argnames=("kv_len",))

    # ------------------------------------------------------------------ helpers
    def _model(self, params):
        return self.model_fn(params)

    def _append(self, model, cache, last_logits, tokens_BT, lens_B):
        hidden, cache = model.extend_hidden(tokens_BT, lens_B, cache)
        last = jnp.take_along_axis(hidden, jnp.maximum(lens_B - 1, 0)[:, None, None], axis=1)
        logits = model.logits(last)[:, 0]
        return cache, jnp.where((lens_B > 0)[:, None], logits, last_logits)

    # ------------------------------------------------------------------ compiled bodies
    def _prefill(self, params, tokens_BP, lens_B):
        model = self._model(params)
        b = tokens_BP.shape[0]
        cache = KVCache.init(model.cfg, b, self.shapes.cache_len)
        last = jnp.zeros((b, model.cfg.vocab_size), jnp.float32)
        # The prompt attends only over the positions it can fill.
        window = cache.prefix(self.shapes.kv_window(tokens_BP.shape[1]))
        window, last = self._append(model, window, last, tokens_BP, lens_B)
        return cache.with_prefix(window), last

    def _check_kv_len(self, kv_len: int) -> None:
        if kv_len not in self.shapes.kv_windows:
            raise ValueError(f"kv_len={kv_len} is not one of the compiled cache windows "
                             f"{self.shapes.kv_windows}")

    def _extend(self, params, cache, last_logits_BV, tokens_BE, lens_B, *, kv_len: int):
        self._check_kv_len(kv_len)
        window, last = self._append(self._model(params), cache.prefix(kv_len), last_logits_BV,
                                    tokens_BE, lens_B)
        return cache.with_prefix(window), last

    def _matches_stop(self, window_BW):
        """[B] bool: some stop sequence ends the window (the row's last W sampled tokens)."""
        tail = window_BW[:, None, :]  # [B, 1, W]
        table = self.stop_table[None]  # [1, S, W]
        w = self.window
        in_seq = jnp.arange(w)[None, None, :] >= (w - self.stop_lengths)[None, :, None]
        return jnp.where(in_seq, tail == table, True).all(-1).any(-1)  # [B, S] -> [B]

    def _decode_segment(self, params, full_cache, last_logits_BV, row_keys_B, running_B,
                        budget_B, window_BW, *, kv_len: int):
        self._check_kv_len(kv_len)
        model = self._model(params)
        b = last_logits_BV.shape[0]
        steps = self.shapes.segment_len
        cache_len = full_cache.max_len
        cache = full_cache.prefix(kv_len)
        sp = self.sampling
        draw = functools.partial(sample, temperature=sp.temperature, top_k=sp.top_k,
                                 top_p=sp.top_p, greedy=sp.greedy)
        init = _DecodeState(
            step=jnp.int32(0),
            cache=cache,
            last_logits_BV=last_logits_BV,
            tokens_BS=jnp.full((b, steps), self.pad_id, jnp.int32),
            logp_BS=jnp.zeros((b, steps), jnp.float32),
            entropy_BS=jnp.zeros((b, steps), jnp.float32),
            count_B=jnp.zeros((b,), jnp.int32),
            running_B=running_B & (budget_B > 0) & (cache.lengths < kv_len),
            stop_code_B=jnp.where(running_B & (budget_B <= 0), STOP_BUDGET,
                                  jnp.where(running_B & (cache.lengths >= cache_len),
                                            STOP_CACHE_FULL, RUNNING)).astype(jnp.int32),
            budget_B=budget_B,
            window_BW=window_BW,
        )

        def cond(c: _DecodeState):
            return (c.step < steps) & c.running_B.any()

        def body(c: _DecodeState) -> _DecodeState:
            run = c.running_B
            keys = row_step_keys(row_keys_B, c.cache.lengths)
            tok, lp, ent = draw(c.last_logits_BV, keys)
            tok = jnp.where(run, tok, self.pad_id)
            col = jax.nn.one_hot(c.count_B, steps, dtype=jnp.bool_) & run[:, None]
            window = jnp.where(run[:, None],
                               jnp.concatenate([c.window_BW[:, 1:], tok[:, None]], axis=1),
                               c.window_BW)
            budget = c.budget_B - run.astype(jnp.int32)
            new_cache, last = self._append(model, c.cache, c.last_logits_BV, tok[:, None],
                                           run.astype(jnp.int32))
            is_eos = (tok[:, None] == self.eos_ids[None, :]).any(-1)
            hit_stop = self._matches_stop(window) if self.has_stops else jnp.zeros((b,), bool)
            code = jnp.where(is_eos, STOP_EOS,
                             jnp.where(hit_stop, STOP_SEQUENCE,
                                       jnp.where(budget <= 0, STOP_BUDGET,
                                                 jnp.where(new_cache.lengths >= cache_len,
                                                           STOP_CACHE_FULL, RUNNING))))
            stopping = run & (code != RUNNING)
            return _DecodeState(
                step=c.step + 1, cache=new_cache, last_logits_BV=last,
                tokens_BS=jnp.where(col, tok[:, None], c.tokens_BS),
                logp_BS=jnp.where(col, lp[:, None], c.logp_BS),
                entropy_BS=jnp.where(col, ent[:, None], c.entropy_BS),
                count_B=c.count_B + run.astype(jnp.int32),
                running_B=run & ~stopping & (new_cache.lengths < kv_len),  # window end: pause
                stop_code_B=jnp.where(stopping, code, c.stop_code_B).astype(jnp.int32),
                budget_B=budget, window_BW=window,
            )

        out = jax.lax.while_loop(cond, body, init)
        r = _host_readable
        return SegmentOutput(r(out.tokens_BS), r(out.logp_BS), r(out.entropy_BS), r(out.count_B),
                             r(out.stop_code_B), r(out.window_BW),
                             _lengths_readable(full_cache.with_prefix(out.cache)),
                             out.last_logits_BV)
