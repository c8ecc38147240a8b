"""Sandbox backends: the command line that starts the model's code, one per isolation level.

=========  ==========================================================================================
backend    what contains the code (every backend also gets the prelude's rlimits, a scrubbed
           environment and a wall-clock kill; the audit hook is a convenience, never relied on)
=========  ==========================================================================================
bwrap      The default and the only backend ``auto`` takes. Bubblewrap, started as a non-root uid:
           new user, pid, net, ipc, uts and cgroup namespaces, all capabilities dropped, no new
           privileges, dies with its parent. A private root, read-only: ``/usr``, the
           interpreter's prefixes and a few ``/etc`` files, a fresh ``/proc``, a minimal read-only
           ``/dev`` (so no ``/dev/shm``), and one size-limited tmpfs, ``/sandbox`` (``/tmp`` links
           to it): the call's working dir and its only writable place, which exists in that call's
           mount namespace alone. The code arrives through a memfd (``--file``), so no host path
           of the call exists. A seccomp filter (seccomp.py) refuses new namespaces and, unless
           ``allow_subprocess``, process creation. RLIMIT_NPROC counts per user namespace, hence
           per call.
unshare    Named only, with a warning. ``unshare --user --map-root-user --net --pid --fork
           --mount-proc``: no network, the trainer's processes invisible. The host file system
           stays visible and calls share the host temp dir and uid.
rlimit     Named only, with a warning. rlimits and a non-root uid only.
=========  ==========================================================================================

Per-call limits under bwrap, as a whole: disk = ``disk_mb`` (the tmpfs), processes =
``max_processes`` (its own user namespace), memory = ``memory_mb`` (RLIMIT_AS of its one process;
with ``allow_subprocess`` the documented bound is ``max_processes`` x ``memory_mb``, as no cgroup
is used), open files = ``max_open_files`` per process, wall time and output size (runner.py).
The tmpfs's inode count is not limited (bubblewrap sets only its size): empty files cost kernel
memory but no disk, bounded by the wall time (~1e5 files in 5 s) and freed when the call ends.

When the trainer runs as root, the code runs as ``sandbox_uid`` (nobody) in every backend: root is
exempt from RLIMIT_NPROC and could read anything, so a fork bomb or a secret would not be contained.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil

BACKENDS = ("bwrap", "unshare", "rlimit")

# What each weaker backend leaves uncontained; the one-line warning a user who names it gets.
NOT_CONTAINED = {
    "unshare": "the host file system (readable, writable where permissions allow), per-call "
               "isolation (calls share the host temp dir and uid), disk across files, memory "
               "across processes, host UNIX sockets and host /dev/shm",
    "rlimit": "the host file system, per-call isolation, network, host processes, disk across "
              "files, memory across processes, host UNIX sockets and host /dev/shm",
}

# The call's tmpfs inside a bwrap sandbox: working dir, HOME, TMPDIR; the only writable place.
SANDBOX_DIR = "/sandbox"

# Directories a Python interpreter needs besides its prefix, bound read-only under bwrap.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/etc/alternatives")


@functools.cache
def prelude_source() -> str:
    """The prelude's source text: it is passed with ``-c`` so the sandbox needs no repo access."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prelude.py")
    with open(path, encoding="utf-8") as f:
        return f.read()


@dataclasses.dataclass(frozen=True)
class PrivateCall:
    """What one bwrap call gets besides the plan: fds the runner opened and passes through."""

    code_fd: int  # memfd holding the model's code; bwrap copies it to SANDBOX_DIR/main.py
    seccomp_fd: int  # memfd holding the BPF program
    disk_bytes: int  # size of the call's tmpfs


@dataclasses.dataclass(frozen=True)
class SandboxPlan:
    """How to start sandboxed code: backend, interpreter, host uid and (bwrap) read-only roots."""

    backend: str
    executable: str
    uid: int | None  # switch to this host uid/gid before exec; None: keep the trainer's
    ro_roots: tuple[str, ...] = ()  # interpreter prefixes to expose (bwrap only)
    tool_path: str = ""  # absolute path of bwrap / unshare

    @property
    def private_root(self) -> bool:
        """True when the code sees its own root and tmpfs, not a host working dir."""
        return self.backend == "bwrap"

    def command(self, workdir: str, settings: dict, private: PrivateCall | None = None) -> list[str]:
        """argv for one run. ``settings`` are the prelude's (limits, workdir, flags)."""
        python = [self.executable, "-I", "-B", "-u", "-c", prelude_source(), json.dumps(settings)]
        if self.backend == "rlimit":
            return python
        if self.backend == "unshare":
            return [self.tool_path, "--user", "--map-root-user", "--net", "--pid", "--fork",
                    "--kill-child", "--mount-proc", "--", *python]
        if self.backend == "bwrap":
            if private is None:
                raise ValueError("the bwrap backend needs the call's fds (runner.run_code)")
            return [self.tool_path, *self._bwrap_args(private), "--", *python]
        raise ValueError(f"unknown sandbox backend {self.backend!r}; choose one of {BACKENDS}")

    def _bwrap_args(self, call: PrivateCall) -> list[str]:
        # --unshare-user explicitly: --unshare-all only *tries* it, and without a user namespace
        # RLIMIT_NPROC would count every call of the uid together.
        args = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
                "--hostname", "sandbox", "--cap-drop", "ALL"]
        args += self._bwrap_read_only_binds()
        args += [
            "--proc", "/proc",
            # A fresh /dev, then read-only: its tmpfs (and /dev/shm in it) is no second writable
            # place; writes to the device nodes (/dev/null) still work.
            "--dev", "/dev", "--remount-ro", "/dev",
            "--size", str(call.disk_bytes), "--tmpfs", SANDBOX_DIR,
            "--symlink", SANDBOX_DIR.lstrip("/"), "/tmp",
            "--file", str(call.code_fd), f"{SANDBOX_DIR}/main.py",
            "--chdir", SANDBOX_DIR,
            # bwrap's root tmpfs is owned by the sandbox uid: read-only, so it holds nothing.
            "--remount-ro", "/",
            "--seccomp", str(call.seccomp_fd),
        ]
        return args

    def _bwrap_read_only_binds(self) -> list[str]:
        args: list[str] = []
        for d in _SYSTEM_DIRS:
            if os.path.islink(d):  # merged-/usr systems: /lib -> usr/lib
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", d, d]
        for f in _ETC_FILES:
            if os.path.exists(f):
                args += ["--ro-bind", f, f]
        bound = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
        for root in self.ro_roots:
            # Never "/" (a prefix of "/" would bind the whole host back in).
            if root != "/" and os.path.isdir(root) and not any(_under(root, b) for b in bound):
                args += ["--ro-bind", root, root]
                bound.append(root)
        return args

    def describe(self) -> str:
        what = {
            "bwrap": "bubblewrap: user+pid+net+ipc namespaces, private read-only root, per-call "
                     "tmpfs, seccomp",
            "unshare": "unshare: user+pid+net namespaces",
            "rlimit": "rlimits + audit-hook prelude only (no OS isolation)",
        }[self.backend]
        who = f"uid {self.uid}" if self.uid is not None else f"uid {os.geteuid()} (trainer's)"
        return f"{self.backend} ({what}; {who}; {self.executable})"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def tool_path(backend: str) -> str:
    """Absolute path of the backend's launcher, '' if not installed (rlimit needs none)."""
    if backend == "rlimit":
        return ""
    return shutil.which(backend) or ""


def interpreter_candidates(executable: str, sys_executable: str) -> list[str]:
    """Interpreters to try, in order. An explicit choice is the only candidate; otherwise this
    process's interpreter, then the system one (for a sandbox uid that cannot reach e.g. a
    pyenv install under /root)."""
    if executable:
        return [executable]
    out = [sys_executable]
    for fallback in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(fallback) and fallback not in out:
            out.append(fallback)
    return out


INTERPRETER_QUERY = (
    "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
    "sys.base_exec_prefix, sys.executable, sys.version_info[:2]]))"
)


def interpreter_roots(info: list) -> tuple[str, ...]:
    """Read-only roots from INTERPRETER_QUERY's answer: prefixes + the real binary's prefix."""
    prefixes = [str(p) for p in info[:4]]
    real_bin = os.path.realpath(str(info[4]))
    prefixes.append(os.path.dirname(os.path.dirname(real_bin)))
    # Both spellings: the interpreter is started by its given path, its libraries by real paths.
    return tuple(dict.fromkeys(q for p in prefixes if p for q in (p, os.path.realpath(p))))
