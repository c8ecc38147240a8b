"""Latency and throughput of trivial sandboxed calls (``print(1)``): this checkout vs an old one.

    python benchmarks/sandbox_latency.py [--old-rev 2d36720] [--old-sandbox auto]
        [--calls 40] [--batch 64] [--workers 64 8] [--rounds 3]

"new" is this checkout's sandbox with the default config (``tools.python.sandbox=auto``);
"old" is ``toolrl_jax/tools/sandbox/`` as of ``--old-rev`` (before issue 14: bwrap if installed,
else unshare), loaded from ``git show`` into a throw-away package, with ``--old-sandbox`` naming
its backend (``auto``, ``bwrap``, ``unshare``; empty: skip the old side). Both run the same
``run_code(plan, "print(1)", cfg)`` a tool call runs. Reported: p50 / p90 latency of sequential
calls, and calls per second of ``--batch`` calls submitted at once to a pool of each ``--workers``
size (best of ``--rounds``). Old and new alternate round by round, so a busy shared host
slows both alike. Issue 14's budget: new ≤ 2x old latency, ≥ 1/2 old throughput.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

from toolrl_jax.config.tools import PythonToolConfig

_SANDBOX = "toolrl_jax/tools/sandbox"
_OLD_MODULES = ("backends", "runner", "choose", "prelude", "__init__")


@dataclasses.dataclass
class Impl:
    name: str
    plan: object
    run_code: object  # (plan, code, cfg) -> outcome with .output


def new_impl(cfg: PythonToolConfig) -> Impl:
    from toolrl_jax.tools.sandbox import run_code, select_plan

    plan = select_plan(cfg)
    return Impl(f"new {plan.backend}", plan, run_code)


def old_impl(rev: str, backend: str, cfg: PythonToolConfig) -> Impl:
    """The sandbox package at ``rev``, imported as ``_old_sandbox`` (its absolute imports of
    itself rewritten; it still uses this checkout's config dataclass, a superset of the old)."""
    root = tempfile.mkdtemp(prefix="old_sandbox_")
    pkg = os.path.join(root, "_old_sandbox")
    os.mkdir(pkg)
    for name in _OLD_MODULES:
        text = subprocess.run(["git", "show", f"{rev}:{_SANDBOX}/{name}.py"], check=True,
                              capture_output=True, text=True).stdout
        with open(os.path.join(pkg, f"{name}.py"), "w") as f:
            f.write(text.replace("toolrl_jax.tools.sandbox", "_old_sandbox"))
    sys.path.insert(0, root)
    old = importlib.import_module("_old_sandbox")
    plan = old.select_plan(dataclasses.replace(cfg, sandbox=backend))
    return Impl(f"old {plan.backend} @{rev}", plan, old.run_code)


def call_once(impl: Impl, cfg: PythonToolConfig) -> float:
    start = time.perf_counter()
    out = impl.run_code(impl.plan, "print(1)", cfg)
    elapsed = time.perf_counter() - start
    if out.output.strip() != "1":
        raise RuntimeError(f"{impl.name}: print(1) gave {out.output!r}")
    return elapsed


def throughput(impl: Impl, cfg: PythonToolConfig, batch: int, workers: int) -> float:
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: call_once(impl, cfg), range(batch)))
        return batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default="2d36720")
    ap.add_argument("--old-sandbox", default="auto")
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[64, 8])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = PythonToolConfig()
    impls = [new_impl(cfg)]
    if args.old_sandbox:
        impls.append(old_impl(args.old_rev, args.old_sandbox, cfg))
    for impl in impls:  # warm the page cache and the probe
        for _ in range(3):
            call_once(impl, cfg)
    latencies = {impl.name: [] for impl in impls}
    rates = {(impl.name, w): 0.0 for impl in impls for w in args.workers}
    for _ in range(args.rounds):
        for impl in impls:
            latencies[impl.name] += [call_once(impl, cfg) for _ in range(args.calls // args.rounds)]
            for w in args.workers:
                rates[impl.name, w] = max(rates[impl.name, w], throughput(impl, cfg, args.batch, w))
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    for impl in impls:
        lat = sorted(latencies[impl.name])
        p50, p90 = statistics.median(lat), lat[int(0.9 * (len(lat) - 1))]
        tput = " ".join(f"{args.batch}@{w}w={rates[impl.name, w]:.1f}/s" for w in args.workers)
        print(f"{impl.name:28s} p50={1e3 * p50:6.1f} ms p90={1e3 * p90:6.1f} ms  {tput}")


if __name__ == "__main__":
    main()
