"""The compiled rollout functions over a fixed batch of *slots*: init, append, decode segment.

Each takes the parameter ``State`` as an argument (not a closure) so a policy update never
recompiles them, and sees only the static shapes of :class:`toolrl_jax.buckets.RolloutShapes`
(B = ``shapes.batch`` slots). A slot holds one row at a time; the host engine refills a freed
slot with the next pending row (continuous batching).

* ``init_cache(params) -> (cache, last_logits_BV)``: an empty cache (every slot length 0).
* ``take_slots(cache, last_logits_BV, slot_R) -> (cache, last_logits_BV)``: a smaller cache of
  R slots holding the named ones (the engine compacts its last rows into it: see the engine).
* ``append(params, cache, last_logits_BV, slot_R, tokens_RE, lens_R, reset_R, kv_len=W)``
  appends ``lens_R[r]`` tokens to slot ``slot_R[r]`` at its own offset — a prompt into a freed
  slot (``reset_R``: the slot's length restarts at 0) or a tool result to a parked row. Only the R
  named slots are computed: their cache rows are gathered, extended and scattered back, so a
  refill of a few slots does not pay a forward over the whole batch. Padding entries use slot
  index B (out of range: gathered clipped, written nowhere) with ``lens_R == 0``.
* ``decode_segment(params, cache, last_logits_BV, seed_key, prompt_id_B, sample_id_B, running_B,
  budget_B, window_BW, min_running, kv_len=W)`` runs up to ``segment_len`` steps in one
  ``lax.while_loop``; a row stops on an EOS id, on any stop sequence (multi-token, matched on
  token ids against the row's last sampled tokens), on its token budget, or when the cache is
  full. The loop exits when fewer than ``min_running`` rows still run (after the first step), so
  the host can refill freed slots and resume parked rows without waiting for the slowest row.
  A row's randomness is derived inside from ``(seed_key, prompt_id, sample_id, position)``:
  the same row samples the same tokens in whichever slot it lands.

**Cache windows.** ``kv_len`` (static, one of ``shapes.kv_windows``) is how much of the cache a
call reads and writes: the call works on the cache's first ``kv_len`` positions and writes them
back (in place: the cache is donated). A decode step's cost is dominated by reading the keys and
values it attends over, so attending over the rows' real lengths instead of the whole
preallocated cache is what makes long caches cheap early in a rollout. The caller picks the
smallest window that every *running* row's length plus the call's new tokens fits in; a row that
nonetheless reaches ``kv_len`` pauses (stop code ``RUNNING``) and resumes in the next call.

**Sharding.** With a :class:`~toolrl_jax.rollout.layout.RolloutLayout` on a mesh, every slot
array and the cache are pinned to rows over data × fsdp and KV heads over tensor inside each
program, so each device holds B / (data·fsdp) slots of KV / tensor heads and nothing is
replicated.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.buckets import RolloutShapes
from toolrl_jax.models.decoder import KVCache
from toolrl_jax.rollout.layout import RolloutLayout
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
    steps: jax.Array  # int32 []; decode steps the segment took (slot-steps = B * steps)
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
                 stop_sequences: list[list[int]], sampling: SamplingParams, pad_id: int = 0,
                 layout: RolloutLayout | None = None):
        # params -> Decoder (e.g. Policy.model, or nnx.merge with a graphdef for nnx States).
        self.model_fn = model_fn
        self.shapes = shapes
        self.sampling = sampling
        self.pad_id = pad_id
        self.layout = layout or RolloutLayout()
        self.layout.check_slots(shapes.batch)
        self.eos_ids = jnp.asarray(np.asarray(eos_ids or [-1], np.int32))
        table, lengths, width = stop_sequence_table(stop_sequences)
        self.stop_table = jnp.asarray(table)
        self.stop_lengths = jnp.asarray(lengths)
        self.window = width
        self.has_stops = bool(stop_sequences)
        self.init_cache = jax.jit(self._init_cache)
        # Not donated: the smaller drain cache cannot reuse the big one's buffers (XLA would only
        # warn that the donation was unusable); the engine drops the big one right after.
        self.take_slots = jax.jit(self._take_slots)
        self.append = jax.jit(self._append_rows, donate_argnums=(1, 2),
                              static_argnames=("kv_len",))
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

    def _pin_rows(self, x):
        """Slot arrays: rows over data × fsdp (no-op without a mesh)."""
        if self.layout.mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, self.layout.rows(x.ndim))

    def _pin_cache(self, cache: KVCache) -> KVCache:
        """Cache: rows over data × fsdp, KV heads over tensor (no-op without a mesh)."""
        lay = self.layout
        if lay.mesh is None:
            return cache
        k_spec, v_spec, len_spec = lay.cache_specs(cache.k[0].shape[1])
        pin = jax.lax.with_sharding_constraint
        named = functools.partial(jax.sharding.NamedSharding, lay.mesh)
        return KVCache(tuple(pin(k, named(k_spec)) for k in cache.k),
                       tuple(pin(v, named(v_spec)) for v in cache.v),
                       pin(cache.lengths, named(len_spec)))

    def _check_kv_len(self, kv_len: int) -> None:
        if kv_len not in self.shapes.kv_windows:
            raise ValueError(f"kv_len={kv_len} is not one of the compiled cache windows "
                             f"{self.shapes.kv_windows}")

    # ------------------------------------------------------------------ compiled bodies
    def _init_cache(self, params):
        cfg = self._model(params).cfg
        b = self.shapes.batch
        cache = KVCache.init(cfg, b, self.shapes.cache_len)
        last = jnp.zeros((b, cfg.vocab_size), jnp.float32)
        return self._pin_cache(cache), self._pin_rows(last)

    def _take_slots(self, cache, last_logits_BV, slot_R):
        """A cache of R slots holding slots ``slot_R`` of this one (entries B: an empty slot)."""
        take = functools.partial(jnp.take, indices=slot_R, axis=0, mode="clip")
        small = KVCache(tuple(take(k) for k in cache.k), tuple(take(v) for v in cache.v),
                        jnp.where(slot_R < cache.lengths.shape[0], take(cache.lengths), 0))
        return self._pin_cache(small), self._pin_rows(take(last_logits_BV))

    def _append_rows(self, params, cache, last_logits_BV, slot_R, tokens_RE, lens_R, reset_R, *,
                     kv_len: int):
        self._check_kv_len(kv_len)
        model = self._model(params)
        if slot_R.shape[0] == cache.lengths.shape[0]:
            return self._append_in_place(model, cache, last_logits_BV, slot_R, tokens_RE, lens_R,
                                         reset_R, kv_len)
        take = functools.partial(jnp.take, indices=slot_R, axis=0, mode="clip")
        sub = KVCache(tuple(take(k)[..., :kv_len] for k in cache.k),
                      tuple(take(v)[:, :, :kv_len] for v in cache.v),
                      jnp.where(reset_R, 0, take(cache.lengths)))
        sub, sub_last = self._append(model, sub, take(last_logits_BV), tokens_RE, lens_R)
        # Padding entries (slot index B) are dropped by the scatters.
        merged = KVCache(
            tuple(k.at[slot_R, :, :, :kv_len].set(s, mode="drop") for k, s in zip(cache.k, sub.k)),
            tuple(v.at[slot_R, :, :kv_len].set(s, mode="drop") for v, s in zip(cache.v, sub.v)),
            cache.lengths.at[slot_R].set(sub.lengths, mode="drop"))
        last = last_logits_BV.at[slot_R].set(sub_last, mode="drop")
        return self._pin_cache(merged), self._pin_rows(last)

    def _append_in_place(self, model, cache, last_logits_BV, slot_R, tokens_RE, lens_R, reset_R,
                         kv_len):
        """``append`` naming as many entries as slots: the inputs are scattered to their slots and
        the whole window extended in place (a gathered copy would double the cache's memory)."""
        b = cache.lengths.shape[0]

        def put(base, x):
            return base.at[slot_R].set(x, mode="drop")

        tokens_BE = put(jnp.full((b, tokens_RE.shape[1]), self.pad_id, jnp.int32), tokens_RE)
        lens_B = put(jnp.zeros((b,), jnp.int32), lens_R)
        reset_B = put(jnp.zeros((b,), bool), reset_R)
        window = cache.prefix(kv_len)
        window = dataclasses.replace(window, lengths=jnp.where(reset_B, 0, window.lengths))
        window, last = self._append(model, window, last_logits_BV, tokens_BE, lens_B)
        return self._pin_cache(cache.with_prefix(window)), self._pin_rows(last)

    def _matches_stop(self, window_BW):
        """[B] bool: some stop sequence ends the window (the row's last W sampled tokens)."""
        tail = window_BW[:, None, :]  # [B, 1, W]
        table = self.stop_table[None]  # [1, S, W]
        w = self.window
        in_seq = jnp.arange(w)[None, None, :] >= (w - self.stop_lengths)[None, :, None]
        return jnp.where(in_seq, tail == table, True).all(-1).any(-1)  # [B, S] -> [B]

    @staticmethod
    def row_keys(seed_key, prompt_id_B, sample_id_B):
        """A row's key depends only on (seed, prompt id, sample id), never on its slot."""
        base = jax.random.wrap_key_data(seed_key)
        keys = jax.vmap(lambda p: jax.random.fold_in(base, p))(prompt_id_B)
        return jax.vmap(jax.random.fold_in)(keys, sample_id_B)

    def _decode_segment(self, params, full_cache, last_logits_BV, seed_key, prompt_id_B,
                        sample_id_B, running_B, budget_B, window_BW, min_running, *,
                        kv_len: int):
        self._check_kv_len(kv_len)
        model = self._model(params)
        b = last_logits_BV.shape[0]
        steps = self.shapes.segment_len
        cache_len = full_cache.max_len
        cache = full_cache.prefix(kv_len)
        row_keys_B = self.row_keys(seed_key, prompt_id_B, sample_id_B)
        sp = self.sampling
        draw = functools.partial(sample, temperature=sp.temperature, top_k=sp.top_k,
                                 top_p=sp.top_p, greedy=sp.greedy)
        init = _DecodeState(
            step=jnp.int32(0),
            cache=cache,
            last_logits_BV=last_logits_BV,
            tokens_BS=self._pin_rows(jnp.full((b, steps), self.pad_id, jnp.int32)),
            logp_BS=self._pin_rows(jnp.zeros((b, steps), jnp.float32)),
            entropy_BS=self._pin_rows(jnp.zeros((b, steps), jnp.float32)),
            count_B=self._pin_rows(jnp.zeros((b,), jnp.int32)),
            running_B=running_B & (budget_B > 0) & (cache.lengths < kv_len),
            stop_code_B=jnp.where(running_B & (budget_B <= 0), STOP_BUDGET,
                                  jnp.where(running_B & (cache.lengths >= cache_len),
                                            STOP_CACHE_FULL, RUNNING)).astype(jnp.int32),
            budget_B=budget_B,
            window_BW=window_BW,
        )

        def cond(c: _DecodeState):
            # At least one step, then on while enough rows run: a segment that waited for its
            # last row would keep freed slots idle.
            enough = (c.step == 0) | (c.running_B.sum() >= min_running)
            return (c.step < steps) & c.running_B.any() & enough

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
                step=c.step + 1, cache=self._pin_cache(new_cache),
                last_logits_BV=self._pin_rows(last),
                tokens_BS=jnp.where(col, tok[:, None], c.tokens_BS),
                logp_BS=jnp.where(col, lp[:, None], c.logp_BS),
                entropy_BS=jnp.where(col, ent[:, None], c.entropy_BS),
                count_B=c.count_B + run.astype(jnp.int32),
                running_B=run & ~stopping & (new_cache.lengths < kv_len),  # window end: pause
                stop_code_B=jnp.where(stopping, code, c.stop_code_B).astype(jnp.int32),
                budget_B=budget, window_BW=window,
            )

        out = jax.lax.while_loop(cond, body, init)
        pin = self._pin_rows
        return SegmentOutput(pin(out.tokens_BS), pin(out.logp_BS), pin(out.entropy_BS),
                             pin(out.count_B), pin(out.stop_code_B), pin(out.window_BW), out.step,
                             self._pin_cache(full_cache.with_prefix(out.cache)),
                             pin(out.last_logits_BV))
