"""Launching a simulated pod from a test: N processes of a scenario module on 127.0.0.1.

Shared by the multi-host tests (``tests/experiment/test_multihost.py``,
``tests/rollout/test_multihost_rollout.py``): each starts its scenario as 2 processes × 4 CPU
devices plus a 1 × 8 reference, and fails — rather than hangs CI — if a collective never returns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(module: str, workdir, log, **flags) -> subprocess.Popen:
    """``python -m module --workdir W --flag value …`` with this environment minus XLA_FLAGS
    (the scenario sets its own device count)."""
    args = [sys.executable, "-m", module, "--workdir", str(workdir)]
    for k, v in flags.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait(procs, logs, timeout_s: float) -> None:
    """Waits for every process; the watchdog kills all of them and fails after ``timeout_s``
    (a hung collective), and a non-zero exit fails with the end of that process's log."""
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"simulated pod hung for {timeout_s:g} s") from None
    for p, log in zip(procs, logs):
        if p.returncode:
            log.seek(0)
            raise AssertionError(f"process exited {p.returncode}:\n"
                                 f"{log.read().decode()[-4000:]}")
