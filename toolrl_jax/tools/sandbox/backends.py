"""Sandbox backends: the command line that starts the model's code, one per isolation level.

=========  ==========================================================================================
backend    what contains the code (every backend also gets the prelude's rlimits + audit hook, a
           scrubbed environment, a fresh temp working dir and a wall-clock kill of its process group)
=========  ==========================================================================================
bwrap      bubblewrap: new user, pid, net, ipc, uts and cgroup namespaces; a private file system with
           only /usr, the interpreter's prefixes (read-only), a fresh /proc, /dev and a tmpfs /tmp,
           plus the working dir (read-write); all capabilities dropped; dies with its parent.
unshare    util-linux ``unshare --user --map-root-user --net --pid --fork --mount-proc``: no network
           (only a down loopback), the trainer's processes invisible (own pid namespace and /proc),
           no capabilities outside the namespace. The host file system stays visible; writes
           outside the working dir are refused by file permissions (non-root uid) and the hook.
rlimit     no OS isolation beyond rlimits and (when the trainer is root) a non-root uid; network,
           file writes, process creation and /proc of other processes are refused by the audit
           hook only. The weakest level: for machines where neither of the above is permitted.
=========  ==========================================================================================

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
class SandboxPlan:
    """How to start sandboxed code: backend, interpreter, host uid and (bwrap) read-only roots."""

    backend: str
    executable: str
    uid: int | None  # switch to this host uid/gid before exec; None: keep the trainer's
    ro_roots: tuple[str, ...] = ()  # interpreter prefixes to expose (bwrap only)
    tool_path: str = ""  # absolute path of bwrap / unshare

    def command(self, workdir: str, settings: dict) -> list[str]:
        """argv for one run. ``settings`` are the prelude's (limits, workdir, flags)."""
        python = [self.executable, "-I", "-B", "-u", "-c", prelude_source(), json.dumps(settings)]
        if self.backend == "rlimit":
            return python
        if self.backend == "unshare":
            return [self.tool_path, "--user", "--map-root-user", "--net", "--pid", "--fork",
                    "--kill-child", "--mount-proc", "--", *python]
        if self.backend == "bwrap":
            return [self.tool_path, *self._bwrap_mounts(workdir), "--", *python]
        raise ValueError(f"unknown sandbox backend {self.backend!r}; choose one of {BACKENDS}")

    def _bwrap_mounts(self, workdir: str) -> list[str]:
        args = ["--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
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
            if os.path.isdir(root) and not any(_under(root, b) for b in bound):
                args += ["--ro-bind", root, root]
                bound.append(root)
        # /tmp is a fresh tmpfs; the working dir (often under /tmp) is bound on top of it.
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                 "--bind", workdir, workdir, "--chdir", workdir]
        return args

    def describe(self) -> str:
        what = {
            "bwrap": "bubblewrap: user+pid+net+ipc namespaces, private read-only filesystem",
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
