"""Executor: concurrency, order, per-call limits, never raising; record -> replay round trip."""

import json
import threading
import time

import pytest

from toolrl_jax.tools import (
    CalculatorTool,
    InvalidCall,
    ParsedCall,
    ToolCache,
    ToolExecutor,
    ToolResult,
    cache_key,
)
from toolrl_jax.types import ToolStatus


class SleepTool:
    """Sleeps ``seconds`` then echoes them; counts how many calls overlap."""

    name = "sleep"
    description = "sleeps"
    parameters = {"type": "object", "properties": {"seconds": {"type": "number"}}}

    def __init__(self):
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def call(self, args):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        time.sleep(float(args["seconds"]))
        with self._lock:
            self.running -= 1
        return ToolResult(ToolStatus.OK, f"slept {args['seconds']}")


class BrokenTool:
    name = "broken"
    description = "raises"
    parameters = {"type": "object"}

    def call(self, args):
        raise RuntimeError("disk on fire")


def call(name, **args):
    return ParsedCall(name, args, "", 0, 0)


def test_calls_run_concurrently_and_results_keep_their_order():
    sleeper = SleepTool()
    n, nap = 8, 0.3
    with ToolExecutor({"sleep": sleeper}, max_workers=n) as ex:
        start = time.monotonic()
        results = ex.run([call("sleep", seconds=nap * (1 + i % 2) / 2) for i in range(n)])
        elapsed = time.monotonic() - start
    assert elapsed < 2 * nap  # ~one sleep, not n sleeps
    assert sleeper.max_running == n
    assert [r.text for r in results] == [f"slept {nap * (1 + i % 2) / 2}" for i in range(n)]


def test_python_calls_run_concurrently():
    from toolrl_jax.config.tools import PythonToolConfig
    from toolrl_jax.tools import PythonTool

    tool = PythonTool(PythonToolConfig(timeout_s=20.0))
    n, nap = 4, 1.0
    # Each call prints when its sleep began and ended (wall clock, shared with the sandbox).
    # Concurrent calls' sleeps overlap: every one began before any ended. Sequential calls
    # could not, whatever the machine's load — unlike a bound on the elapsed time, which a
    # busy 2-core CI box broke (1.54 s against 4 x 0.5 s x 0.75).
    code = "import time\nt = time.time()\ntime.sleep({nap})\nprint({i}, t, time.time())"
    with ToolExecutor({"python": tool}, max_workers=n) as ex:
        results = ex.run([call("python", code=code.format(nap=nap, i=i)) for i in range(n)])
    rows = [r.text.split() for r in results]
    assert [int(r[0]) for r in rows] == list(range(n))
    began, ended = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
    assert max(began) < min(ended), (began, ended)


def test_nothing_raises_to_the_caller():
    with ToolExecutor({"calculator": CalculatorTool(), "broken": BrokenTool()}) as ex:
        invalid = InvalidCall("invalid JSON in <tool_call>: boom", "<tool_call>{", 0, 12)
        results = ex.run([
            invalid,
            call("nope", x=1),
            call("broken"),
            call("calculator", expression="6*7"),
            call("calculator", wrong="6*7"),
            "garbage",
        ])
    statuses = [r.status for r in results]
    assert statuses == [ToolStatus.INVALID_CALL, ToolStatus.INVALID_CALL, ToolStatus.ERROR,
                        ToolStatus.OK, ToolStatus.INVALID_CALL, ToolStatus.INVALID_CALL]
    assert results[0].text == invalid.message
    assert "unknown tool 'nope'" in results[1].text
    assert "internal tool error: RuntimeError: disk on fire" in results[2].text
    assert results[3].text == "42"


def test_backstop_timeout_counts_from_start_of_each_call():
    sleeper = SleepTool()
    with ToolExecutor({"sleep": sleeper}, max_workers=1, call_timeout_s=0.3) as ex:
        start = time.monotonic()
        results = ex.run([call("sleep", seconds=0.1), call("sleep", seconds=0.1),
                          call("sleep", seconds=5)])
        elapsed = time.monotonic() - start
    # The first two queue behind each other on one worker, yet neither times out.
    assert [r.status for r in results] == [ToolStatus.OK, ToolStatus.OK, ToolStatus.TIMEOUT]
    assert "executor limit" in results[2].text
    assert elapsed < 1.5


def test_elapsed_is_each_calls_own_run_time_not_its_queue_wait():
    # One worker, four 0.1 s calls: the last waits ~0.3 s in the queue. Each result's elapsed_s
    # is its own ~0.1 s (SleepTool measures nothing itself), so the engine's time/tools_s is
    # the tools' cost and time/tools_queue_s the waiting.
    with ToolExecutor({"sleep": SleepTool()}, max_workers=1) as ex:
        start = time.monotonic()
        results = ex.run([call("sleep", seconds=0.1) for _ in range(4)])
        elapsed = time.monotonic() - start
    assert elapsed >= 0.4
    assert all(0.1 <= r.elapsed_s < 0.25 for r in results), [r.elapsed_s for r in results]


def test_long_results_are_truncated_head_and_tail():
    class Loud:
        name, description, parameters = "loud", "", {}

        def call(self, args):
            return ToolResult(ToolStatus.OK, "HEAD" + "x" * 10_000 + "TAIL")

    with ToolExecutor({"loud": Loud()}, max_result_chars=200) as ex:
        r = ex.run_one(call("loud"))
    assert r.truncated and len(r.text) <= 200
    assert r.text.startswith("HEAD") and r.text.endswith("TAIL") and "truncated" in r.text


def test_record_then_replay_round_trip(tmp_path):
    path = str(tmp_path / "sub" / "tools.jsonl")
    sleeper = SleepTool()
    calls = [call("calculator", expression="2**10"), call("sleep", seconds=0.01),
             call("calculator", expression="1/0")]
    with ToolExecutor({"calculator": CalculatorTool(), "sleep": sleeper},
                      cache=ToolCache(path, "record")) as ex:
        recorded = ex.run(calls)
    assert sleeper.calls == 1
    rows = [json.loads(line) for line in open(path)]
    assert sorted(r["tool"] for r in rows) == ["calculator", "calculator", "sleep"]
    assert rows[0]["key"] == cache_key(rows[0]["tool"], rows[0]["arguments"])

    # Replay needs no tool objects at all.
    with ToolExecutor({}, tool_names=["calculator", "sleep"],
                      cache=ToolCache(path, "replay")) as ex:
        replayed = ex.run(calls)
        miss = ex.run_one(call("calculator", expression="3+3"))
    assert [(r.status, r.text) for r in replayed] == [(r.status, r.text) for r in recorded]
    assert replayed[2].status == ToolStatus.ERROR  # errors replay as errors
    assert miss.status == ToolStatus.ERROR and "has no result for tool 'calculator'" in miss.text
    assert sleeper.calls == 1  # nothing ran during replay


def test_cache_keys_ignore_argument_order_and_bad_files_are_named(tmp_path):
    assert cache_key("t", {"a": 1, "b": 2}) == cache_key("t", {"b": 2, "a": 1})
    assert cache_key("t", {"a": 1}) != cache_key("u", {"a": 1})
    with pytest.raises(FileNotFoundError, match="record it first"):
        ToolCache(str(tmp_path / "missing.jsonl"), "replay")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        ToolCache(str(bad), "replay")
    with pytest.raises(ValueError, match="record"):
        ToolCache(str(bad), "off")


def test_missing_tool_objects_rejected_unless_replaying():
    with pytest.raises(ValueError, match="only a replay cache"):
        ToolExecutor({}, tool_names=["python"])
