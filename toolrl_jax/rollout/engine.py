"""Host engine: continuous batching over compiled slots, tool calls run while the others decode.

One ``generate`` call turns P prompts × G samples into token-exact :class:`Trajectory` records.
The compiled batch is a fixed set of B *slots* (``rollout.slots``; by default one per row):

    pending rows ─► append (prompt into a free slot) ─► decode_segment ─► (host) per row:
         ▲                                                    │  finished: slot freed
         │                                                    │  stopped at a call: parked,
         └────── append (tool result, row resumes) ◄── worker pool runs the call
                                                              │  otherwise: keeps decoding

Each iteration of the host loop: take the tool results that have arrived, refill free slots from
the pending rows, append both, then decode the running slots for up to ``segment_len`` steps — a
segment ends early once enough rows stopped that refilling pays (``min_running``). A parked row
does not hold the loop: its call runs in a thread pool while every other slot keeps decoding.
It keeps its slot (its cache) and resumes with an append of the result — unless rows are
waiting for a slot: then it gives the slot up and, once the result is in, returns at the front
of the queue with its whole context prefilled in one call (a prefill of a few hundred tokens
costs far less than a slot idling through a tool's latency).
Shapes never change (no recompiles after :meth:`RolloutEngine.warmup`), and
a row's randomness depends on (seed, prompt id, sample id, position) only, so the same seed
gives the same trajectory in whichever slot, in whatever order, the row runs — up to fp32
rounding: a row that gave up its slot returns through a prefill of its context, which rounds
differently (~1e-6) from step-by-step decoding, so with tool latencies that change which rows
give their slot up, a token drawn on a probability boundary can flip.

**Many hosts.** Slots are split over the mesh (:mod:`toolrl_jax.rollout.layout`); each process
owns the slots on its devices and the rows of its share of the prompts: it parses them, runs
their tools and reads back only their tokens. Every choice that selects a compiled program or
ends the loop is combined across processes in one small all-gather per iteration
(:func:`~toolrl_jax.rollout.layout.agree`), so a slow or timed-out tool on one host delays
nothing but its own row. Finished trajectories are gathered to every process in prompt order.

Model output never makes the engine raise: a malformed call becomes an ``invalid_call`` result
shown to the model.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from toolrl_jax.buckets import RolloutShapes, round_up
from toolrl_jax.rollout.compiled import (
    STOP_BUDGET,
    STOP_CACHE_FULL,
    STOP_EOS,
    STOP_SEQUENCE,
    CompiledRollout,
)
from toolrl_jax.rollout.layout import agree, decode_params, gather_objects
from toolrl_jax.tools.base import InvalidCall, ParsedCall, ToolResult
from toolrl_jax.types import StopReason, ToolCallRecord, ToolStatus, Trajectory
from toolrl_jax.verifiers import extract_answer

Executor = Callable[[Sequence[ParsedCall]], list[ToolResult]]

# How the per-process counts of one engine iteration combine (layout.agree).
_AGREE = {"refill": "max", "reprefill": "max", "reprefill_len": "max", "results": "max",
          "result_width": "max", "result_kv": "max", "decodable": "sum", "decode_kv": "max",
          "pending": "sum", "occupied": "max", "waiting": "sum", "unfinished": "sum"}


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    max_new_tokens: int
    max_tool_calls: int
    max_result_tokens: int


@dataclasses.dataclass
class RolloutStats:
    generate_s: float = 0.0  # device programs (dispatch + wait for their results)
    tools_s: float = 0.0  # sum of the calls' own run times (they overlap each other and decode)
    # Sum of the time calls sat in the pool / executor queues before running: with more rows
    # calling at once than ``tools.max_workers`` this dominates, and it is not the tool's cost.
    tools_queue_s: float = 0.0
    tool_wait_s: float = 0.0  # the loop waited for a tool with no slot left to decode
    host_s: float = 0.0  # parsing, tokenizing results, building inputs
    segments: int = 0
    extends: int = 0  # append calls carrying tool results
    refills: int = 0  # rows prefilled into a slot
    compactions: int = 0  # moves into a smaller drain cache (drain_tiers)
    sampled_tokens: int = 0
    tool_calls: int = 0
    slot_steps: int = 0  # this process's slots × decode steps taken
    busy_slot_steps: int = 0  # of which a slot sampled a token
    # The same, counted only in segments while rows were still waiting for a slot: idle slots
    # there are the scheduler's loss (after the last row got a slot, no schedule can fill them).
    pending_slot_steps: int = 0
    pending_busy_slot_steps: int = 0

    @property
    def idle_slot_share(self) -> float:
        return 1.0 - self.busy_slot_steps / max(self.slot_steps, 1)

    @property
    def idle_slot_share_while_pending(self) -> float:
        return 1.0 - self.pending_busy_slot_steps / max(self.pending_slot_steps, 1)


@dataclasses.dataclass
class _Row:
    prompt_id: int
    sample_id: int
    tokens: list[int]
    prompt_len: int
    budget: int  # tokens this row may sample in total
    order: int = 0  # position in the generate call's prompt-major row order
    loss_mask: list[int] = dataclasses.field(default_factory=list)
    logp: list[float] = dataclasses.field(default_factory=list)
    entropy: list[float] = dataclasses.field(default_factory=list)
    segment_ids: list[int] = dataclasses.field(default_factory=list)
    calls: list[ToolCallRecord] = dataclasses.field(default_factory=list)
    turn_start: int = 0
    sampled: int = 0
    done: bool = False
    stop_reason: StopReason = StopReason.BUDGET
    slot: int = -1
    # Functions whose call *is* the answer (function-calling items): recorded, not executed.
    answer_calls: frozenset = frozenset()
    # A call in flight: its future, the parsed call and the token span of the call's turn.
    future: cf.Future | None = None
    call: ParsedCall | InvalidCall | None = None
    span: tuple[int, int] = (0, 0)

    def __post_init__(self):
        n = len(self.tokens)
        self.loss_mask = [0] * n
        self.logp = [0.0] * n
        self.entropy = [0.0] * n
        self.segment_ids = [-1] * n
        self.turn_start = n

    def add(self, tokens, *, sampled: bool, logp=None, entropy=None):
        n = len(tokens)
        self.tokens.extend(int(t) for t in tokens)
        self.loss_mask.extend([1 if sampled else 0] * n)
        self.logp.extend(logp if sampled else [0.0] * n)
        self.entropy.extend(entropy if sampled else [0.0] * n)
        self.segment_ids.extend([len(self.calls) if sampled else -1] * n)
        if sampled:
            self.sampled += n


def _done_future(result: ToolResult) -> cf.Future:
    future: cf.Future = cf.Future()
    future.set_result(result)
    return future


def drain_tiers(slots: int, row_shards: int) -> tuple[int, ...]:
    """Slot counts of the drain caches, largest first: successive quarters of ``slots`` while
    they split evenly over the row shards (e.g. 32 slots, 1 shard → (8, 2)).

    Once no row waits for a slot, the running (and parked) rows move into the smallest tier they
    fit (``take_slots``). A long-tailed batch ends with a few long rows; in one quarter-size
    cache the last of them still leave 3 of 4 slots idle per step (measured: 15.8 % idle
    slot-steps on the benchmark's Pareto tail), a second tier cuts that tail again. Each tier
    costs its own compiled programs (appends + decode per window) at warm-up, hence quarters
    and not halves."""
    tiers, d = [], slots
    while d % 4 == 0 and d // 4 and (d // 4) % row_shards == 0:
        d //= 4
        tiers.append(d)
    return tuple(tiers)


class RolloutEngine:
    """Generates tool-using trajectories for a policy; see the module docstring."""

    def __init__(self, compiled: CompiledRollout, tokenizer, syntax, execute: Executor,
                 limits: EngineLimits, seed: int = 0, tool_workers: int = 0,
                 compute_dtype=None, queued: bool = True, compact_drain: bool = True):
        """``execute`` runs a list of calls (the engine hands it one at a time, from
        ``tool_workers`` threads, so calls overlap decoding and each other; 0: one thread per row
        of the ``generate`` call — a row has at most one call in flight, so no call ever waits
        for an engine thread, and what bounds how many *run* at once is the executor's own pool,
        ``tools.max_workers``: sandbox processes are the scarce resource, not waiting threads).
        ``compute_dtype``:
        the params are cast to it for decoding (fp32 master weights → bf16 decode).
        ``queued``: rows may wait for a slot (more rows than slots): warm-up then also compiles
        what only a queue uses — small refill batches, evicted rows' whole-context prefills and
        the drain caches (:func:`drain_tiers`). With one slot per row those would be compiled for
        nothing. ``compact_drain=False`` keeps the full slot batch to the end (a lockstep
        baseline)."""
        self.compiled = compiled
        self.shapes: RolloutShapes = compiled.shapes
        self.layout = compiled.layout
        self.tokenizer = tokenizer
        self.syntax = syntax
        self.execute = execute
        self.limits = limits
        self.compute_dtype = compute_dtype
        self.base_key = jax.random.key(seed)
        self.stats = RolloutStats()
        self.tool_workers = tool_workers
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_size = 0
        b, shards = self.shapes.batch, self.layout.row_shards
        # Compiled append batch sizes: a quarter of the slots (refills and results arrive a few
        # at a time) and all of them (the first fill); multiples of the row shards.
        self.queued = queued
        self.append_batches = (tuple(sorted({min(b, round_up(max(1, b // 4), shards)), b}))
                               if queued else (b,))
        # A segment with rows waiting for a slot ends once this many of its rows stopped.
        self.refill_quantum = max(1, b // 8)
        self.drain_batches = (drain_tiers(b, shards) if queued and compact_drain else ())

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def _result_tokens(self, result: ToolResult, room: int) -> list[int]:
        """Tool output → tokens appended to the context, truncated to the configured budget."""
        output = result.text
        out_tokens = self._encode(output)
        limit = self.limits.max_result_tokens
        if len(out_tokens) > limit:
            output = self._decode(out_tokens[:limit]) + " …[truncated]"
        tokens = self._encode(self.syntax.format_result(dataclasses.replace(result, text=output)))
        return tokens[: min(self.shapes.extend_len, room)]

    def _append_batch(self, rows_needed: int, slots: int) -> int:
        """The smallest compiled append batch in which every process fits ``rows_needed`` rows
        (a cache of ``slots`` slots: a drain cache takes whole-batch appends only)."""
        lay = self.layout
        if slots != self.shapes.batch:
            return slots
        return next(r for r in self.append_batches if len(lay.owned(r)) >= rows_needed)

    def _append_programs(self) -> list[tuple[int, int, int]]:
        """Every compiled (batch, width, kv window) of ``append``: refills write a prompt into
        the window that holds it; results may land at any window; evicted rows return whole."""
        s = self.shapes
        combos = {(r, s.prefill_len, s.kv_window(s.prefill_len)) for r in self.append_batches}
        combos |= {(r, w, kv) for r in self.append_batches for w in s.extend_widths
                   for kv in s.kv_windows}
        # Evicted rows come back with their whole context, a window wide, a few at a time.
        if self.queued:
            combos |= {(self.append_batches[0], w, w) for w in s.kv_windows}
        return sorted(combos)

    # ------------------------------------------------------------------ compilation
    def warmup(self, params) -> int:
        """Compiles init, every append variant and decode per cache window; returns how many.

        Rollouts pick a window, width and batch per call from the rows' state, so without this a
        variant is compiled the first time some rollout needs it; after warm-up nothing compiles
        again. The calls run on inert inputs (no slot named, nothing running), so they cost only
        the compilations.
        """
        s, c, lay = self.shapes, self.compiled, self.layout
        params = decode_params(params, lay, self.compute_dtype)
        cache, last = c.init_cache(params)
        cache, last = self._warm_tier(params, cache, last, self._append_programs())
        count = 1 + len(self._append_programs()) + len(s.kv_windows)
        for d in self.drain_batches:  # each tier's cache comes from the one above it
            cache, last = c.take_slots(cache, last, lay.put(np.full((d,), s.batch, np.int32)))
            # Results; and rows evicted before the drain that come back with their context.
            drain_appends = sorted({(d, w, kv) for w in s.extend_widths for kv in s.kv_windows}
                                   | {(d, w, w) for w in s.kv_windows}
                                   | {(d, s.prefill_len, s.kv_window(s.prefill_len))})
            cache, last = self._warm_tier(params, cache, last, drain_appends)
            count += 1 + len(drain_appends) + len(s.kv_windows)
        jax.block_until_ready(last)
        return count

    def _warm_tier(self, params, cache, last, appends):
        """Runs every ``appends`` variant and decode per window on inert inputs."""
        s, c, lay = self.shapes, self.compiled, self.layout
        b = cache.lengths.shape[0]
        for r, width, kv in appends:
            cache, last = c.append(params, cache, last, lay.put(np.full((r,), b, np.int32)),
                                   lay.put(np.full((r, width), c.pad_id, np.int32)),
                                   lay.put(np.zeros((r,), np.int32)),
                                   lay.put(np.zeros((r,), bool)), kv_len=kv)
        for kv in s.kv_windows:
            out = c.decode_segment(
                params, cache, last, self._seed(), lay.put(np.zeros((b,), np.uint32)),
                lay.put(np.zeros((b,), np.uint32)), lay.put(np.zeros((b,), bool)),
                lay.put(np.zeros((b,), np.int32)), lay.put(np.full((b, c.window), -1, np.int32)),
                np.int32(1), kv_len=kv)
            cache, last = out.cache, out.last_logits_BV
        return cache, last

    def _seed(self):
        return self.layout.put_replicated(np.asarray(jax.random.key_data(self.base_key)))

    # ------------------------------------------------------------------ main entry
    def generate(self, params, prompts: Sequence[Sequence[int]], group_size: int,
                 prompt_ids: Sequence[int] | None = None,
                 budgets: Sequence[int] | None = None,
                 answer_calls: Sequence[Sequence[str]] | None = None) -> list[Trajectory]:
        """Samples ``group_size`` trajectories per prompt (rows ordered prompt-major).

        ``budgets``: per-prompt sampled-token budgets (default ``max_new_tokens`` for all).
        ``answer_calls``: per prompt, the function names whose call is the row's answer (a
        function-calling item's own tools): such a call ends the row, recorded with an empty
        result and stop reason ``answer``, and is never executed.
        Every process passes the same prompts and gets the same trajectories back; each runs
        only its own share of the rows.
        """
        prompt_ids = list(range(len(prompts))) if prompt_ids is None else list(prompt_ids)
        budgets = [self.limits.max_new_tokens] * len(prompts) if budgets is None else budgets
        s = self.shapes
        for pid, p in zip(prompt_ids, prompts):
            if not 0 < len(p) <= s.prefill_len:
                raise ValueError(f"prompt {pid} has {len(p)} tokens; allowed 1.."
                                 f"{s.prefill_len} (rollout.max_prompt_len)")
        n, me = jax.process_count(), jax.process_index()
        mine = range(me * len(prompts) // n, (me + 1) * len(prompts) // n)
        answers = [frozenset(a) for a in answer_calls] if answer_calls else None
        rows = [_Row(prompt_ids[k], g, list(map(int, prompts[k])), len(prompts[k]),
                     int(budgets[k]), order=k * group_size + g,
                     answer_calls=answers[k] if answers else frozenset())
                for k in mine for g in range(group_size)]
        self._size_pool(len(rows))
        self._run(decode_params(params, self.layout, self.compute_dtype), rows)
        done = gather_objects([(r.order, self._finish(r)) for r in rows])
        return [t for _, t in sorted(done, key=lambda x: x[0])]

    def _size_pool(self, rows: int) -> None:
        """A thread per row in flight (``tool_workers=0``) or the configured count. A pool capped
        below the rows that park at once queues their calls behind each other: 511 calls of 1 s
        from 256 rows took 10.8 s on 64 threads vs 8.4 s with one per row (instant tool: 8.0 s /
        7.7 s; benchmarks/rollout_throughput.py (b)). Threads start only when a call needs one,
        so a large pool costs nothing until used; between calls no call is in flight."""
        want = self.tool_workers or max(1, rows)
        if self._pool_size != want:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = cf.ThreadPoolExecutor(max_workers=want, thread_name_prefix="rollout-call")
            self._pool_size = want

    def _run(self, params, rows: list[_Row]) -> None:
        """The host loop of the module docstring, over this process's ``rows``."""
        s, c, lay = self.shapes, self.compiled, self.layout
        b, st = s.batch, self.stats
        self._slots = b  # the cache's slot count: shapes.batch, or a drain tier once compacted
        self._free = collections.deque(int(i) for i in lay.owned(b))
        self._queue = collections.deque(rows)
        self._by_slot: dict[int, _Row] = {}
        self._window = np.full((b, c.window), -1, np.int32)
        self._prompt_id = np.zeros((b,), np.uint32)
        self._sample_id = np.zeros((b,), np.uint32)
        parked: list[_Row] = []
        t0 = time.perf_counter()
        cache, last = c.init_cache(params)
        seed = self._seed()
        st.generate_s += time.perf_counter() - t0
        while True:
            t0 = time.perf_counter()
            results = self._collect_results(parked)
            prompts, contexts = self._admit()
            decodable = [r for r in self._by_slot.values() if not r.done and r.future is None]
            g = agree({
                "refill": len(prompts), "reprefill": len(contexts),
                "reprefill_len": max((len(r.tokens) for r in contexts), default=0),
                "results": len(results),
                "result_width": max((len(t) for _, t in results), default=0),
                "result_kv": max((len(r.tokens) for r, _ in results), default=0),
                "decodable": len(decodable),
                "decode_kv": max((len(r.tokens) for r in decodable), default=0) + s.segment_len,
                "pending": len(self._queue), "occupied": len(self._by_slot),
                "waiting": len(self._queue) + len(parked),
                "unfinished": len(self._queue) + len(parked) + len(decodable),
            }, _AGREE)
            st.host_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            # The drain: no row waits; the rows move down tier by tier (warm-up compiled each
            # tier's take_slots from the tier above) while they fit the next one.
            for d in self.drain_batches if not g["pending"] else ():
                if d < self._slots and g["occupied"] <= len(lay.owned(d)):
                    cache, last = self._compact(cache, last, d)
            if g["refill"]:  # new rows: their prompts into free slots
                cache, last = self._append(params, cache, last, g["refill"], s.prefill_len,
                                           s.kv_window(s.prefill_len),
                                           [(r, r.tokens) for r in prompts], reset=True)
            if g["reprefill"]:  # evicted rows back with their whole context
                width = s.kv_window(g["reprefill_len"])
                cache, last = self._append(params, cache, last, g["reprefill"], width, width,
                                           [(r, r.tokens) for r in contexts], reset=True)
            if g["results"]:  # parked rows that kept their slot: the result only
                cache, last = self._append(params, cache, last, g["results"],
                                           s.extend_width(g["result_width"]),
                                           s.kv_window(g["result_kv"]), results, reset=False)
                st.extends += 1
            st.refills += len(prompts) + len(contexts)
            st.generate_s += time.perf_counter() - t0
            if g["decodable"]:
                cache, last = self._decode_step(params, cache, last, seed, decodable, parked, g)
            elif g["unfinished"]:
                # Nothing anywhere can decode: every unfinished row waits for a tool. Wait for
                # one of ours briefly (others' rows may resume first: agree again soon).
                t0 = time.perf_counter()
                if parked:
                    cf.wait([r.future for r in parked], timeout=0.05,
                            return_when=cf.FIRST_COMPLETED)
                else:
                    time.sleep(0.002)
                st.tool_wait_s += time.perf_counter() - t0
            else:
                return

    def _collect_results(self, parked: list[_Row]) -> list[tuple[_Row, list[int]]]:
        """Takes every arrived result. Rows that kept their slot are returned with the result's
        tokens (to append); evicted rows go back to the front of the queue; ended rows free."""
        results, back = [], []
        for r in [r for r in parked if r.future.done()]:
            parked.remove(r)
            toks = self._take_result(r)
            if r.slot < 0:
                if toks:
                    back.append(r)
            elif toks:
                results.append((r, toks))
                self._window[r.slot] = -1  # stop sequences match sampled tokens of the new turn
            else:
                self._release(r)
        self._queue.extendleft(reversed(back))  # resumed rows before new ones
        return results

    def _admit(self) -> tuple[list[_Row], list[_Row]]:
        """Fills free slots from the queue: new rows (prompt only) and evicted rows (their whole
        context; at most one small append batch of them per iteration)."""
        prompts, contexts = [], []
        room = len(self.layout.owned(self.append_batches[0]))
        while self._free and self._queue:
            evicted = len(self._queue[0].tokens) > self._queue[0].prompt_len
            if evicted and len(contexts) >= room:
                break
            r = self._queue.popleft()
            r.slot = self._free.popleft()
            self._by_slot[r.slot] = r
            self._window[r.slot] = -1
            self._prompt_id[r.slot] = r.prompt_id % 2**32
            self._sample_id[r.slot] = r.sample_id % 2**32
            (contexts if evicted else prompts).append(r)
        return prompts, contexts

    def _release(self, r: _Row) -> None:
        self._free.append(self._by_slot.pop(r.slot).slot)
        r.slot = -1

    def _compact(self, cache, last, slots: int):
        """Moves every occupied slot into a cache of ``slots`` slots (the drain: no row waits,
        the rest fit), renumbering the rows' slots and the host copies of per-slot state."""
        lay, st = self.layout, self.stats
        old = sorted(self._by_slot.items())
        new = lay.owned(slots)
        source = np.full((slots,), self._slots, np.int32)  # the old slot count: an empty slot
        window = np.full((slots, self._window.shape[1]), -1, np.int32)
        prompt_id = np.zeros((slots,), np.uint32)
        sample_id = np.zeros((slots,), np.uint32)
        self._by_slot = {}
        for (slot, r), j in zip(old, new):
            source[j], window[j] = slot, self._window[slot]
            prompt_id[j], sample_id[j] = self._prompt_id[slot], self._sample_id[slot]
            r.slot = int(j)
            self._by_slot[r.slot] = r
        self._free = collections.deque(int(j) for j in new[len(old):])
        self._window, self._prompt_id, self._sample_id = window, prompt_id, sample_id
        self._slots = slots
        st.compactions += 1
        t0 = time.perf_counter()
        out = self.compiled.take_slots(cache, last, lay.put(source))
        st.generate_s += time.perf_counter() - t0
        return out

    def _decode_step(self, params, cache, last, seed, decodable: list[_Row], parked: list[_Row],
                     g: dict[str, int]):
        """One decode segment over the running slots; books its tokens into the rows."""
        s, c, lay, st = self.shapes, self.compiled, self.layout, self.stats
        b = self._slots
        # With rows waiting, end the segment once enough rows stopped that refilling pays.
        waiting = g["waiting"] > 0
        min_running = max(1, g["decodable"] - self.refill_quantum + 1) if waiting else 1
        running = np.zeros((b,), bool)
        budget = np.zeros((b,), np.int32)
        for r in decodable:
            running[r.slot] = True
            budget[r.slot] = r.budget - r.sampled
        t0 = time.perf_counter()
        out = c.decode_segment(
            params, cache, last, seed, lay.put(self._prompt_id), lay.put(self._sample_id),
            lay.put(running), lay.put(budget), lay.put(self._window), np.int32(min_running),
            kv_len=s.kv_window(g["decode_kv"]))
        tokens, logp, ent, count, stop, win = lay.local_rows(
            out.tokens_BS, out.logp_BS, out.entropy_BS, out.num_tokens_B, out.stop_code_B,
            out.window_BW)
        steps = int(np.asarray(out.steps.addressable_data(0)))
        st.generate_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        slots = lay.owned(b)
        st.segments += 1
        st.slot_steps += len(slots) * steps
        st.busy_slot_steps += int(count.sum())
        if g["pending"]:
            st.pending_slot_steps += len(slots) * steps
            st.pending_busy_slot_steps += int(count.sum())
        position = {int(slot): j for j, slot in enumerate(slots)}
        for r in decodable:
            j = position[r.slot]
            k = int(count[j])
            self._window[r.slot] = win[j]
            r.add(tokens[j, :k], sampled=True, logp=logp[j, :k].tolist(),
                  entropy=ent[j, :k].tolist())
            st.sampled_tokens += k
            self._after_segment(r, int(stop[j]))
            if r.future is not None:
                parked.append(r)
                if self._queue:
                    # Rows wait for a slot: give this one up while the call runs; the row comes
                    # back with its whole context (one prefill) instead of idling its slot.
                    self._release(r)
            elif r.done:
                self._release(r)
        st.host_s += time.perf_counter() - t0
        return out.cache, out.last_logits_BV

    def _append(self, params, cache, last, rows_needed: int, width: int, kv_len: int,
                items: list[tuple[_Row, list[int]]], *, reset: bool):
        """One ``append`` call writing each ``(row, tokens)`` into the row's slot."""
        lay = self.layout
        r_total = self._append_batch(rows_needed, self._slots)
        at = lay.owned(r_total)[: len(items)]  # where this process's entries go
        slot = np.full((r_total,), self._slots, np.int32)
        tokens = np.full((r_total, width), self.compiled.pad_id, np.int32)
        lens = np.zeros((r_total,), np.int32)
        for i, (row, toks) in zip(at, items):
            slot[i], lens[i] = row.slot, len(toks)
            tokens[i, : len(toks)] = toks
        resets = np.full((r_total,), reset, bool)
        return self.compiled.append(params, cache, last, lay.put(slot), lay.put(tokens),
                                    lay.put(lens), lay.put(resets), kv_len=kv_len)

    # ------------------------------------------------------------------ tools
    def _submit(self, call: ParsedCall | InvalidCall) -> cf.Future:
        self.stats.tool_calls += 1
        if not isinstance(call, ParsedCall):
            return _done_future(call.to_result())

        def run() -> ToolResult:
            t0 = time.perf_counter()
            result = None
            try:
                result = self.execute([call])[0]
                return result
            finally:
                wall = time.perf_counter() - t0
                # The tool measures its own run; the rest of ``wall`` was spent queued.
                own = min(result.elapsed_s, wall) if result is not None else wall
                self.stats.tools_s += own
                self.stats.tools_queue_s += wall - own

        return self._pool.submit(run)

    def _take_result(self, r: _Row) -> list[int]:
        """Records the arrived result of ``r``'s call; its tokens, or [] when the row ends."""
        try:
            result = r.future.result()
        except Exception as e:  # an executor bug must not take the rollout down
            result = ToolResult(ToolStatus.ERROR, f"{r.call.name}: {type(e).__name__}: {e}")
        call, span = r.call, r.span
        r.future = r.call = None
        room = self.shapes.cache_len - len(r.tokens) - 1
        toks = self._result_tokens(result, room) if room > 0 else []
        start = len(r.tokens)
        r.calls.append(ToolCallRecord(call.name or "", call.arguments_json,
                                      ToolStatus(result.status), result.text, span,
                                      (start, start + len(toks))))
        if not toks:
            r.done, r.stop_reason = True, StopReason.CACHE_FULL
            return []
        r.add(toks, sampled=False)
        r.turn_start = len(r.tokens)
        return toks

    # ------------------------------------------------------------------ per-row decisions
    def _after_segment(self, r: _Row, stop: int) -> None:
        """Ends the row, parks it on a call (submitting the call), or leaves it running."""
        turn = self._decode(r.tokens[r.turn_start:])
        if stop == STOP_EOS:
            r.done, r.stop_reason = True, StopReason.EOS
            return
        call_end = self.syntax.find_call_end(turn) if stop in (STOP_SEQUENCE, 0) else None
        if call_end is not None:
            if len(r.calls) >= self.limits.max_tool_calls:
                r.done, r.stop_reason = True, StopReason.MAX_TURNS
                return
            parsed = self.syntax.parse_last_call(turn[:call_end])
            if isinstance(parsed, ParsedCall) and parsed.name in r.answer_calls:
                end = len(r.tokens)
                r.calls.append(ToolCallRecord(parsed.name, parsed.arguments_json, ToolStatus.OK,
                                              "", (r.turn_start, end), (end, end)))
                r.done, r.stop_reason = True, StopReason.ANSWER
                return
            if parsed is not None:
                r.call, r.span = parsed, (r.turn_start, len(r.tokens))
                r.future = self._submit(parsed)
                return
        if extract_answer(turn, self.syntax.answer_style) is not None:
            r.done, r.stop_reason = True, StopReason.ANSWER
            return
        if stop == STOP_BUDGET or stop == STOP_CACHE_FULL:
            r.done = True
            r.stop_reason = StopReason.BUDGET if stop == STOP_BUDGET else StopReason.CACHE_FULL
            # A call left open at the budget is recorded as invalid (TAO's failed-call filter
            # and the status metrics see it), but there is no room to show the model a result.
            parsed = self.syntax.parse_last_call(turn)
            if isinstance(parsed, InvalidCall):
                span = (r.turn_start, len(r.tokens))
                r.calls.append(ToolCallRecord(parsed.name or "", parsed.arguments_json,
                                              ToolStatus.INVALID_CALL, parsed.message, span,
                                              (len(r.tokens), len(r.tokens))))

    def _finish(self, r: _Row) -> Trajectory:
        seg = np.asarray(r.segment_ids, np.int32)
        return Trajectory(
            prompt_id=r.prompt_id,
            sample_id=r.sample_id,
            tokens=np.asarray(r.tokens, np.int32),
            loss_mask=np.asarray(r.loss_mask, np.int8),
            old_logp=np.asarray(r.logp, np.float32),
            entropy=np.asarray(r.entropy, np.float32),
            segment_ids=seg,
            post_tool_mask=(seg >= 1).astype(np.int8),
            prompt_len=r.prompt_len,
            calls=r.calls,
            stop_reason=r.stop_reason,
            text=self._decode(r.tokens[r.prompt_len:]),
        )
