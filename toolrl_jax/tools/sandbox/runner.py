"""Runs one piece of model code under a :class:`SandboxPlan` and collects what it printed.

The trainer-side half of the sandbox: the code's home (bwrap: a memfd that bubblewrap copies into
the call's own tmpfs, with a memfd for the seccomp program, so nothing of the call touches the
host's disk; the weaker backends: a fresh host temp dir, deleted afterwards), a scrubbed
environment, a new session/process group, stdout and stderr read through one pipe (two with
``stderr_fails``) with a byte cap on both together (a 100 MB print costs at most
``capture_bytes`` of memory; the program is stopped when it exceeds the cap), and a wall-clock
deadline after which the whole process group gets SIGKILL (under bwrap the code's own session dies
with it: bubblewrap's init is pid 1 of the call's pid namespace, and the kernel kills a namespace
whose pid 1 is gone). Nothing here runs untrusted code in this process: ``subprocess`` forks and
execs in C (no ``preexec_fn``, which is unsafe with threads), including the switch to the sandbox
uid.

Why one pipe, and two with ``stderr_fails``: one pipe shared by stdout and stderr keeps every
write in the order the code made it (the code runs unbuffered, ``python -u``), which is what the
model should see — but it cannot tell whether stderr was written, which TAO-RL's rule (a call that
wrote anything to stderr failed) needs. Two pipes read in arrival order do not keep that order:
epoll reports a pipe once however many writes it holds, so ``print; warn; print`` came back as
``print, print, warn`` in 28 of 40 runs (measured under bwrap) — and differently from run to run,
which a tool cache or a rerun would notice. So with ``stderr_fails`` the streams are kept apart
and shown stdout first, then stderr: deterministic, and exact for the usual failure (prints, then
a traceback or a warning at the end), like TAO-RL's own sandbox, which returns the two streams
separately.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time

from toolrl_jax.config.tools import PythonToolConfig
from toolrl_jax.tools.sandbox.backends import SANDBOX_DIR, PrivateCall, SandboxPlan
from toolrl_jax.tools.sandbox.seccomp import seccomp_program

_READ_CHUNK = 65536


@dataclasses.dataclass(frozen=True)
class SandboxOutcome:
    # stdout and stderr as written (one pipe), or stdout then stderr (stderr_fails); decoded
    # (invalid UTF-8 replaced), capped
    output: str
    # Bytes read from stderr before the code ended or was stopped; None: stderr shared stdout's
    # pipe (stderr_fails off), so it was not told apart.
    stderr_bytes: int | None
    returncode: int | None  # None when we killed it
    timed_out: bool  # the wall-clock deadline passed
    output_overflow: bool  # more than capture_bytes were printed; the program was stopped
    signal: int | None  # the signal that ended it, if it was not us
    elapsed_s: float


def sandbox_env(workdir: str) -> dict[str, str]:
    """The whole environment of the child: nothing of the trainer's (tokens, keys) leaks."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # One thread each: RLIMIT_NPROC counts threads, and the host is shared.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def prelude_settings(cfg: PythonToolConfig, workdir: str) -> dict:
    return {
        "workdir": workdir,
        "cpu_s": int(cfg.cpu_s),
        "memory_bytes": int(cfg.memory_mb) << 20,
        "max_open_files": int(cfg.max_open_files),
        "max_processes": int(cfg.max_processes),
        "max_file_bytes": int(cfg.max_file_mb) << 20,
        "allow_subprocess": bool(cfg.allow_subprocess),
        "echo_last_expression": bool(cfg.echo_last_expression),
        "audit_hook": bool(cfg.audit_hook),
    }


def run_code(plan: SandboxPlan, code: str, cfg: PythonToolConfig) -> SandboxOutcome:
    """Runs ``code`` as a script in a fresh sandbox; never raises for anything the code does."""
    source = code.encode("utf-8", errors="replace")  # lone surrogates cannot be written as UTF-8
    if plan.private_root:
        return _run_private(plan, source, cfg)
    return _run_in_host_dir(plan, source, cfg)


def _run_private(plan: SandboxPlan, source: bytes, cfg: PythonToolConfig) -> SandboxOutcome:
    """bwrap: the code and the seccomp program travel as memfds; the call's files live in its own
    tmpfs, which vanishes with its mount namespace, so there is nothing to clean up."""
    fds: list[int] = []
    try:
        fds.append(_memfd("main.py", source))
        fds.append(_memfd("seccomp", seccomp_program(cfg.allow_subprocess)))
        call = PrivateCall(code_fd=fds[0], seccomp_fd=fds[1], disk_bytes=int(cfg.disk_mb) << 20)
        cmd = plan.command(SANDBOX_DIR, prelude_settings(cfg, SANDBOX_DIR), call)
        # cwd "/": any host dir would do, the sandbox uid only needs to be able to enter it.
        return _run(plan, cmd, cfg, cwd="/", env=sandbox_env(SANDBOX_DIR), pass_fds=tuple(fds))
    finally:
        for fd in fds:
            os.close(fd)


def _memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, read from its start (close-on-exec unless
    passed on with ``pass_fds``)."""
    fd = os.memfd_create(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _run_in_host_dir(plan: SandboxPlan, source: bytes, cfg: PythonToolConfig) -> SandboxOutcome:
    """unshare / rlimit: a fresh host temp dir holds the code and is deleted afterwards."""
    workdir = os.path.realpath(
        tempfile.mkdtemp(prefix="toolrl_py_", dir=cfg.workdir_root or None)
    )
    try:
        with open(os.path.join(workdir, "main.py"), "wb") as f:
            f.write(source)
        if plan.uid is not None:
            os.chown(workdir, plan.uid, plan.uid)
        cmd = plan.command(workdir, prelude_settings(cfg, workdir))
        return _run(plan, cmd, cfg, cwd=workdir, env=sandbox_env(workdir))
    finally:
        _remove_tree(workdir)


def _run(plan: SandboxPlan, cmd: list[str], cfg: PythonToolConfig, *, cwd: str,
         env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> SandboxOutcome:
    ids = {}
    if plan.uid is not None:
        ids = {"user": plan.uid, "group": plan.uid, "extra_groups": []}
    start = time.monotonic()
    split = bool(cfg.stderr_fails)  # see the module docstring
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if split else subprocess.STDOUT,
        cwd=cwd, env=env, start_new_session=True, close_fds=True, pass_fds=pass_fds, **ids,
    )
    deadline = start + cfg.timeout_s
    chunks: dict[bool, list[bytes]] = {False: [], True: []}  # by "is stderr"
    size = 0
    timed_out = overflow = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, data=False)
            if split:
                sel.register(proc.stderr, selectors.EVENT_READ, data=True)
            while sel.get_map() and not overflow:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=remaining):
                    data = os.read(key.fd, _READ_CHUNK)
                    if not data:  # EOF: every writer of this pipe (the code, its children) is gone
                        sel.unregister(key.fileobj)
                        continue
                    keep = cfg.capture_bytes - size  # one cap over both streams
                    chunks[key.data].append(data[:keep])
                    size += min(len(data), keep)
                    if len(data) > keep:
                        overflow = True
                        break
        returncode = None
        if not (timed_out or overflow):
            try:
                returncode = proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:  # closed its output but kept running
                timed_out = True
    finally:
        # Always kill the group: stops a timed-out or overflowing program and any stray children.
        _kill_group(proc)
        proc.wait()
        proc.stdout.close()
        if split:
            proc.stderr.close()
    elapsed = time.monotonic() - start
    sig = None
    if returncode is not None:
        sig = _signal_of(plan, returncode)
    return SandboxOutcome(
        output=b"".join(chunks[False] + chunks[True]).decode("utf-8", errors="replace"),
        stderr_bytes=sum(map(len, chunks[True])) if split else None,
        returncode=returncode,
        timed_out=timed_out,
        output_overflow=overflow,
        signal=sig,
        elapsed_s=elapsed,
    )


def _signal_of(plan: SandboxPlan, returncode: int) -> int | None:
    if returncode < 0:  # the direct child died by a signal (rlimit backend)
        return -returncode
    # bubblewrap's init and the prelude's pid-1 reaper (unshare) report a death by signal N as
    # 128 + N, like a shell; the prelude maps the code's own exit statuses above 127 to 1.
    if plan.backend != "rlimit" and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _remove_tree(path: str) -> None:
    """Deletes the working dir even if the code made parts of it unreadable (chmod 000)."""

    def fix_and_retry(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix_and_retry)
