"""Chooses a :class:`SandboxPlan` that works on this machine, by trying it.

``auto`` means bubblewrap, the one backend that contains every category (backends.py); without a
working bubblewrap model code is refused, with the install hint. A weaker backend runs only when
the config names it, and then logs one warning line naming what it does not contain.

Each candidate (interpreter) is probed end to end: the interpreter is asked for its prefixes (as
the sandbox uid, which proves that uid can run it), then ``print(...)`` runs through the real
sandbox with the real limits. The first that answers wins. Results are cached per process, so the
probe cost (~0.1-0.5 s) is paid once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading

from toolrl_jax.config.tools import PythonToolConfig
from toolrl_jax.tools.sandbox.backends import (
    INTERPRETER_QUERY,
    NOT_CONTAINED,
    SandboxPlan,
    interpreter_candidates,
    interpreter_roots,
    tool_path,
)
from toolrl_jax.tools.sandbox.runner import run_code, sandbox_env


class SandboxUnavailable(RuntimeError):
    """No sandbox backend works here (or not the one the config names); says why each failed."""


log = logging.getLogger(__name__)

_PROBE_MARK = "toolrl-sandbox-ok"
_INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap)"
_cache: dict[tuple, SandboxPlan] = {}
_lock = threading.Lock()


def select_plan(cfg: PythonToolConfig) -> SandboxPlan:
    """A working plan for ``cfg.sandbox`` ('auto': bwrap); raises :class:`SandboxUnavailable`."""
    key = (cfg.sandbox, cfg.executable, cfg.sandbox_uid, os.geteuid())
    with _lock:
        if key not in _cache:
            _cache[key] = _select(cfg)
        plan = _cache[key]
    if cfg.allow_subprocess and _runs_as_root(plan):
        raise SandboxUnavailable(
            "tools.python.allow_subprocess=True needs the code to run under a non-root uid "
            f"(RLIMIT_NPROC does not bind root); the chosen sandbox is {plan.describe()}"
        )
    return plan


def _runs_as_root(plan: SandboxPlan) -> bool:
    return plan.uid is None and os.geteuid() == 0


def _select(cfg: PythonToolConfig) -> SandboxPlan:
    backend = "bwrap" if cfg.sandbox == "auto" else cfg.sandbox
    plan, failures = _first_working(backend, cfg)
    if plan is None and backend == "bwrap":
        raise SandboxUnavailable(
            f"tools.python.sandbox={cfg.sandbox!r} runs model code only under bubblewrap, which "
            f"does not work here ({'; '.join(failures)}): {_INSTALL_HINT}. To run it with weaker "
            "containment, name a backend: tools.python.sandbox='unshare' or 'rlimit'."
        )
    if plan is None:
        raise SandboxUnavailable(
            f"no usable Python sandbox (tools.python.sandbox={cfg.sandbox!r}): " + "; ".join(failures)
        )
    if backend in NOT_CONTAINED:
        log.warning("tools.python.sandbox=%r does NOT contain %s; %s and use 'auto' to contain "
                    "model code", backend, NOT_CONTAINED[backend], _INSTALL_HINT)
    return plan


def _first_working(backend: str, cfg: PythonToolConfig) -> tuple[SandboxPlan | None, list[str]]:
    """The first interpreter (x uid) that runs through ``backend``, and why the others failed."""
    launcher = tool_path(backend)
    if backend != "rlimit" and not launcher:
        return None, [f"{backend}: not installed"]
    uids: list[int | None] = [cfg.sandbox_uid] if os.geteuid() == 0 else [None]
    failures = []
    for uid in uids:
        for exe in interpreter_candidates(cfg.executable, sys.executable):
            plan, why = _probe(backend, launcher, exe, uid, cfg)
            if plan is not None:
                return plan, failures
            failures.append(f"{backend} with {exe} as uid {uid}: {why}")
    return None, failures


def _probe(backend, launcher, exe, uid, cfg) -> tuple[SandboxPlan | None, str]:
    ids = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    try:
        done = subprocess.run(
            [exe, "-I", "-c", INTERPRETER_QUERY], capture_output=True, text=True, timeout=30,
            env=sandbox_env("/"), cwd="/", **ids,
        )
        info = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return None, f"interpreter not runnable ({type(e).__name__}: {e})"
    plan = SandboxPlan(backend, exe, uid, interpreter_roots(info), launcher)
    # Probe with the real limits but a generous clock: a cold start may be slow on a busy host.
    probe_cfg = dataclasses.replace(cfg, timeout_s=max(cfg.timeout_s, 30.0))
    try:
        out = run_code(plan, f"print({_PROBE_MARK!r})", probe_cfg)
    except OSError as e:
        return None, f"{type(e).__name__}: {e}"
    if out.returncode == 0 and _PROBE_MARK in out.output:
        return plan, ""
    return None, f"exit {out.returncode}: {out.output.strip()[-300:]}"
