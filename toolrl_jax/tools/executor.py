"""Runs a batch of parsed calls concurrently and returns their results in the same order.

The rollout engine hands over one call per row that stopped at a call end; calls run on a thread
pool (tools release the GIL: the Python tool waits on a subprocess, search is NumPy), each with a
backstop timeout measured from when it *starts* running. Nothing raises to the engine: an
:class:`InvalidCall`, an unknown tool, a replay miss, an exception inside a tool and a call past
its backstop all become results with the matching status.

A call past the backstop is reported as ``timeout`` but its thread cannot be killed; it finishes
in the background and holds a worker until then. The shipped tools bound their own run time (the
Python sandbox kills its process group), so the backstop only catches bugs.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Mapping, Sequence

from toolrl_jax.tools.base import InvalidCall, ParsedCall, Tool, ToolResult, truncate_middle
from toolrl_jax.tools.cache import ToolCache
from toolrl_jax.types import ToolStatus

Call = ParsedCall | InvalidCall


class ToolExecutor:
    def __init__(
        self,
        tools: Mapping[str, Tool],
        *,
        max_workers: int = 8,
        call_timeout_s: float = 30.0,
        max_result_chars: int = 2000,
        cache: ToolCache | None = None,
        tool_names: Sequence[str] | None = None,
    ):
        """``tool_names`` defaults to ``tools``' keys; pass it alone (``tools={}``) to replay a
        cache without building the tools."""
        self.tools = dict(tools)
        self.tool_names = tuple(tool_names) if tool_names is not None else tuple(self.tools)
        self.call_timeout_s = call_timeout_s
        self.max_result_chars = max_result_chars
        self.cache = cache
        if cache is None or cache.mode != "replay":
            missing = [n for n in self.tool_names if n not in self.tools]
            if missing:
                raise ValueError(f"no tool object for {missing}; only a replay cache runs without")
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tool")

    def run(self, calls: Sequence[Call]) -> list[ToolResult]:
        """Results for ``calls``, in order. Returns once every call has a result."""
        results: list[ToolResult | None] = [None] * len(calls)
        pending: dict[int, tuple[cf.Future, list, Call]] = {}
        for i, call in enumerate(calls):
            immediate = self._immediate(call)
            if immediate is not None:
                results[i] = immediate
                continue
            started: list[float] = []  # filled by the worker when the call begins
            pending[i] = (self._pool.submit(self._execute, call, started), started, call)
        while pending:
            now = time.monotonic()
            for i, (future, started, call) in list(pending.items()):
                if future.done():
                    results[i] = future.result()
                elif started and now - started[0] > self.call_timeout_s:
                    results[i] = ToolResult(
                        ToolStatus.TIMEOUT,
                        f"{call.name}: no result after {self.call_timeout_s:g} s (executor limit)",
                        elapsed_s=now - started[0],
                    )
                else:
                    continue
                del pending[i]
            if pending:
                cf.wait([f for f, _, _ in pending.values()], timeout=0.05,
                        return_when=cf.FIRST_COMPLETED)
        return results  # type: ignore[return-value]

    def run_one(self, call: Call) -> ToolResult:
        return self.run([call])[0]

    def _immediate(self, call: Call) -> ToolResult | None:
        """Results that need no tool: invalid calls, unknown tools, replayed calls."""
        if isinstance(call, InvalidCall):
            return call.to_result()
        if not isinstance(call, ParsedCall):
            return ToolResult(ToolStatus.INVALID_CALL, f"not a tool call: {call!r:.200}")
        if call.name not in self.tool_names:
            return ToolResult(
                ToolStatus.INVALID_CALL,
                f"unknown tool '{call.name}'; available tools: {', '.join(self.tool_names)}",
            )
        if self.cache is not None and self.cache.mode == "replay":
            hit = self.cache.get(call.name, call.arguments)
            return hit if hit is not None else self.cache.miss(call.name, call.arguments)
        return None

    def _execute(self, call: ParsedCall, started: list) -> ToolResult:
        started.append(time.monotonic())
        try:
            result = self.tools[call.name].call(call.arguments)
        except Exception as e:  # a tool bug must not take the rollout down; the model sees it
            result = ToolResult(ToolStatus.ERROR, f"{call.name}: internal tool error: "
                                f"{type(e).__name__}: {e}")
        # The run time as measured here, from start to result: every tool gets the same clock
        # (some tools measure nothing), and queueing before ``started`` is not part of it.
        text, cut = truncate_middle(result.text, self.max_result_chars)
        result = dataclasses.replace(result, elapsed_s=time.monotonic() - started[0],
                                     **({"text": text, "truncated": True} if cut else {}))
        if self.cache is not None and self.cache.mode == "record":
            self.cache.put(call.name, call.arguments, result)
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ToolExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
