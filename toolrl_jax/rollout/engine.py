"""Host engine: compiled generation segments interleaved with tool execution.

One ``generate`` call turns P prompts × G samples into token-exact :class:`Trajectory` records:

    prefill ─► decode_segment ─► (host) parse calls of rows that stopped at a call end,
       ▲                          run them concurrently, tokenize + truncate results
       └──────── extend ◄─────────┘   (rows without a result keep their cache untouched)

Rows that finished keep a fixed batch shape (no recompiles) but sample nothing; the segment loop
exits as soon as no row is running, so waiting rows cost no decode steps. Model output never makes
the engine raise: a malformed call becomes an ``invalid_call`` result shown to the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.buckets import RolloutShapes
from toolrl_jax.rollout.compiled import (
    STOP_BUDGET,
    STOP_CACHE_FULL,
    STOP_EOS,
    STOP_SEQUENCE,
    CompiledRollout,
)
from toolrl_jax.tools.base import InvalidCall, ParsedCall, ToolResult
from toolrl_jax.types import StopReason, ToolCallRecord, ToolStatus, Trajectory
from toolrl_jax.verifiers import extract_answer

Executor = Callable[[Sequence[ParsedCall]], list[ToolResult]]


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    max_new_tokens: int
    max_tool_calls: int
    max_result_tokens: int


@dataclasses.dataclass
class RolloutStats:
    generate_s: float = 0.0
    tools_s: float = 0.0
    host_s: float = 0.0
    segments: int = 0
    extends: int = 0
    sampled_tokens: int = 0
    tool_calls: int = 0


@dataclasses.dataclass
class _Row:
    prompt_id: int
    sample_id: int
    tokens: list[int]
    prompt_len: int
    loss_mask: list[int] = dataclasses.field(default_factory=list)
    logp: list[float] = dataclasses.field(default_factory=list)
    entropy: list[float] = dataclasses.field(default_factory=list)
    segment_ids: list[int] = dataclasses.field(default_factory=list)
    calls: list[ToolCallRecord] = dataclasses.field(default_factory=list)
    turn_start: int = 0
    sampled: int = 0
    done: bool = False
    stop_reason: StopReason = StopReason.BUDGET

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


@dataclasses.dataclass
class _Lane:
    """One compiled batch of rows and its device state (cache, logits, keys, stop windows)."""

    rows: list[_Row]
    device: object  # jax.Device, or None for the default placement
    params: object = None
    cache: object = None
    last: object = None
    keys: object = None
    window: np.ndarray | None = None
    out: object = None  # the SegmentOutput in flight
    lengths: np.ndarray | None = None  # cache lengths after the last segment (host copy)
    pending: list = dataclasses.field(default_factory=list)

    @property
    def active(self) -> bool:
        return any(not r.done for r in self.rows)

    def put(self, x):
        return jnp.asarray(x) if self.device is None else jax.device_put(x, self.device)

    def on_device(self):
        """Context for this lane's calls: the caller's mesh axes, on this lane's device alone.

        jit rejects arguments committed to a device outside the context mesh (the trainer runs
        inside ``jax.set_mesh``), so a lane runs under a one-device mesh with the same axis names.
        """
        ctx = jax.sharding.get_abstract_mesh()
        if self.device is None or ctx.empty:
            return contextlib.nullcontext()
        devices = np.array([self.device]).reshape((1,) * len(ctx.axis_names))
        return jax.set_mesh(jax.sharding.Mesh(devices, ctx.axis_names, axis_types=ctx.axis_types))


class RolloutEngine:
    """Generates tool-using trajectories for a policy; see the module docstring."""

    def __init__(self, compiled: CompiledRollout, tokenizer, syntax, execute: Executor,
                 limits: EngineLimits, seed: int = 0, devices: Sequence | None = None):
        """``devices``: one rollout *lane* per device — the rows are split into independent
        sub-batches of ``compiled.shapes.batch`` rows, each decoded on its own device with its
        own copy of the parameters. Calls are dispatched to every lane before any result is
        read, so the devices decode concurrently (on a CPU host exposed as N XLA devices, the
        lanes use N cores; one XLA:CPU program uses one). ``None``: one lane, default device."""
        self.devices = list(devices) if devices else [None]
        self.compiled = compiled
        self.shapes: RolloutShapes = compiled.shapes
        self.tokenizer = tokenizer
        self.syntax = syntax
        self.execute = execute
        self.limits = limits
        self.base_key = jax.random.key(seed)
        self.stats = RolloutStats()

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def _row_keys(self, rows: list[_Row]):
        # A row's randomness depends only on (prompt_id, sample_id), not its batch position.
        pid = jnp.asarray(np.asarray([r.prompt_id for r in rows], np.int64) % 2**32, jnp.uint32)
        sid = jnp.asarray(np.asarray([r.sample_id for r in rows], np.int64) % 2**32, jnp.uint32)
        keys = jax.vmap(lambda p: jax.random.fold_in(self.base_key, p))(pid)
        return jax.vmap(jax.random.fold_in)(keys, sid)

    def _result_tokens(self, result: ToolResult, room: int) -> list[int]:
        """Tool output → tokens appended to the context, truncated to the configured budget."""
        output = result.text
        out_tokens = self._encode(output)
        limit = self.limits.max_result_tokens
        if len(out_tokens) > limit:
            output = self._decode(out_tokens[:limit]) + " …[truncated]"
        tokens = self._encode(self.syntax.format_result(dataclasses.replace(result, text=output)))
        return tokens[: min(self.shapes.extend_len, room)]

    # ------------------------------------------------------------------ compilation
    def warmup(self, params) -> int:
        """Compiles prefill, decode per cache window and extend per (window, result width).

        Returns the number of programs compiled.

        Rollouts pick a window per call from the rows' lengths, so without this a window is
        compiled the first time some rollout needs it; after warm-up nothing compiles again.
        The calls run on inert rows (nothing running, nothing appended), so they cost only the
        compilations.
        """
        s, c = self.shapes, self.compiled
        for device in self.devices:
            lane = _Lane([], device)
            p = params if device is None else jax.device_put(params, device)
            keys = lane.put(self._row_keys([_Row(0, i, [c.pad_id], 1) for i in range(s.batch)]))
            idle = lane.put(np.zeros((s.batch,), bool))
            budget = lane.put(np.zeros((s.batch,), np.int32))
            window = lane.put(np.full((s.batch, c.window), -1, np.int32))
            exts = [lane.put(np.full((s.batch, w), c.pad_id, np.int32))
                    for w in s.extend_widths]
            no_lens = lane.put(np.zeros((s.batch,), np.int32))
            with lane.on_device():
                cache, last = c.prefill(p, lane.put(np.full((s.batch, s.prefill_len), c.pad_id,
                                                            np.int32)),
                                        lane.put(np.ones((s.batch,), np.int32)))
                for kv_len in s.kv_windows:
                    out = c.decode_segment(p, cache, last, keys, idle, budget, window,
                                           kv_len=kv_len)
                    cache, last = out.cache, out.last_logits_BV
                    for ext in exts:
                        cache, last = c.extend(p, cache, last, ext, no_lens, kv_len=kv_len)
            jax.block_until_ready(last)
        return len(self.devices) * (1 + len(s.kv_windows) * (1 + len(s.extend_widths)))

    # ------------------------------------------------------------------ main entry
    def generate(self, params, prompts: Sequence[Sequence[int]], group_size: int,
                 prompt_ids: Sequence[int] | None = None) -> list[Trajectory]:
        """Samples ``group_size`` trajectories per prompt (rows ordered prompt-major)."""
        prompt_ids = list(range(len(prompts))) if prompt_ids is None else list(prompt_ids)
        rows = [
            _Row(pid, g, list(map(int, p)), len(p))
            for pid, p in zip(prompt_ids, prompts)
            for g in range(group_size)
        ]
        s = self.shapes
        capacity = s.batch * len(self.devices)
        if len(rows) > capacity:
            raise ValueError(f"{len(rows)} rows exceed the compiled rollout batch {s.batch}"
                             + (f" x {len(self.devices)} lanes" if len(self.devices) > 1 else ""))
        for r in rows:
            if not 0 < r.prompt_len <= s.prefill_len:
                raise ValueError(f"prompt {r.prompt_id} has {r.prompt_len} tokens; allowed 1.."
                                 f"{s.prefill_len} (rollout.max_prompt_len)")
        # Rows split evenly over the lanes, each padded to the compiled batch with inert rows.
        per_lane = -(-len(rows) // len(self.devices))
        lanes = []
        for k, device in enumerate(self.devices):
            lane_rows = rows[k * per_lane:(k + 1) * per_lane]
            while len(lane_rows) < s.batch:
                filler = _Row(-1, len(lane_rows), [self.compiled.pad_id], 1)
                filler.done = True
                lane_rows.append(filler)
            lanes.append(_Lane(lane_rows, device))

        t0 = time.perf_counter()
        for lane in lanes:
            lane.params = params if lane.device is None else jax.device_put(params, lane.device)
            prefill = np.full((s.batch, s.prefill_len), self.compiled.pad_id, np.int32)
            lens = np.zeros((s.batch,), np.int32)
            for i, r in enumerate(lane.rows):
                prefill[i, : r.prompt_len] = r.tokens
                lens[i] = r.prompt_len
            with lane.on_device():
                lane.cache, lane.last = self.compiled.prefill(lane.params, lane.put(prefill),
                                                              lane.put(lens))
            lane.keys = lane.put(self._row_keys(lane.rows))
            lane.window = np.full((s.batch, self.compiled.window), -1, np.int32)
        self.stats.generate_s += time.perf_counter() - t0

        while any(lane.active for lane in lanes):
            t0 = time.perf_counter()
            for lane in lanes:  # dispatch every lane before reading any: they run concurrently
                lane.out = self._dispatch_segment(lane) if lane.active else None
            host = jax.device_get([
                (o.tokens_BS, o.logp_BS, o.entropy_BS, o.num_tokens_B, o.stop_code_B,
                 o.window_BW, o.cache.lengths) if (o := lane.out) is not None else None
                for lane in lanes])
            self.stats.generate_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for lane, got in zip(lanes, host):
                if got is None:
                    continue
                lane.cache, lane.last, lane.out = lane.out.cache, lane.out.last_logits_BV, None
                tokens_BS, logp_BS, ent_BS, count_B, stop_B, window, lengths_B = got
                lane.window = np.array(window)
                self.stats.segments += 1
                lane.pending = []
                for i, r in enumerate(lane.rows):
                    if r.done:
                        continue
                    n = int(count_B[i])
                    r.add(tokens_BS[i, :n], sampled=True, logp=logp_BS[i, :n].tolist(),
                          entropy=ent_BS[i, :n].tolist())
                    self.stats.sampled_tokens += n
                    self._after_segment(i, r, int(stop_B[i]), int(lengths_B[i]), lane.pending)
                lane.lengths = lengths_B
            self.stats.host_s += time.perf_counter() - t0
            if any(lane.pending for lane in lanes):
                self._run_tools([lane for lane in lanes if lane.pending])
        return [self._finish(r) for r in rows]

    def _dispatch_segment(self, lane: _Lane):
        s = self.shapes
        running = np.array([not r.done for r in lane.rows])
        budget = np.array([self.limits.max_new_tokens - r.sampled for r in lane.rows], np.int32)
        # Every running row can grow by at most segment_len tokens in this call.
        longest = max(len(r.tokens) for r in lane.rows if not r.done)
        with lane.on_device():
            return self.compiled.decode_segment(
                lane.params, lane.cache, lane.last, lane.keys, lane.put(running),
                lane.put(budget), lane.put(lane.window), kv_len=s.kv_window(longest + s.segment_len))

    # ------------------------------------------------------------------ per-row decisions
    def _after_segment(self, i: int, r: _Row, stop: int, cache_len_now: int, pending) -> None:
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
            if parsed is not None:
                pending.append((i, parsed, (r.turn_start, len(r.tokens))))
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

    def _run_tools(self, lanes: list[_Lane]) -> None:
        """Runs every lane's pending calls in one concurrent batch, then extends each lane."""
        t0 = time.perf_counter()
        valid = [(lane, i, c) for lane in lanes for i, c, _ in lane.pending
                 if isinstance(c, ParsedCall)]
        outputs = self.execute([c for _, _, c in valid])
        results = {(id(lane), i): out for (lane, i, _), out in zip(valid, outputs)}
        self.stats.tools_s += time.perf_counter() - t0
        self.stats.tool_calls += sum(len(lane.pending) for lane in lanes)
        s = self.shapes
        for lane in lanes:
            t0 = time.perf_counter()
            ext = np.full((s.batch, s.extend_len), self.compiled.pad_id, np.int32)
            ext_lens = np.zeros((s.batch,), np.int32)  # filled below, then cut to a width
            for i, call, span in lane.pending:
                r = lane.rows[i]
                result = (results[(id(lane), i)] if isinstance(call, ParsedCall)
                          else call.to_result())
                room = s.cache_len - int(lane.lengths[i]) - 1
                toks = self._result_tokens(result, room) if room > 0 else []
                start = len(r.tokens)
                r.calls.append(ToolCallRecord(call.name or "", call.arguments_json,
                                              ToolStatus(result.status), result.text, span,
                                              (start, start + len(toks))))
                if not toks:
                    r.done, r.stop_reason = True, StopReason.CACHE_FULL
                    continue
                r.add(toks, sampled=False)
                r.turn_start = len(r.tokens)
                ext[i, : len(toks)] = toks
                ext_lens[i] = len(toks)
                lane.window[i] = -1  # stop sequences match sampled tokens of the new turn only
            lane.pending = []
            self.stats.host_s += time.perf_counter() - t0
            if not ext_lens.any():  # every pending row ran out of cache: nothing to append
                continue
            t0 = time.perf_counter()
            kv_len = s.kv_window(max(len(lane.rows[i].tokens) for i in np.flatnonzero(ext_lens)))
            ext = ext[:, : s.extend_width(int(ext_lens.max()))]
            with lane.on_device():
                lane.cache, lane.last = self.compiled.extend(
                    lane.params, lane.cache, lane.last, lane.put(ext), lane.put(ext_lens),
                    kv_len=kv_len)
            self.stats.extends += 1
            self.stats.generate_s += time.perf_counter() - t0

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
