"""In-sandbox prelude: the first Python that runs in the child, before the model's code.

It is shipped as source (``python -I -B -u -c <this file> <json settings>``) so it imports nothing
from toolrl_jax: the sandbox may not even see the repository. Standard library only.

Steps, in order:

1. read ``main.py`` (the model's code) from the working directory;
2. set rlimits with soft == hard, so the code cannot raise them again (CPU, address space, open
   files, processes, file size, no core dumps), and ignore SIGXFSZ so an oversized write fails
   with ``OSError: File too large`` instead of killing the process silently;
3. ``PR_SET_NO_NEW_PRIVS`` (setuid binaries gain nothing) and ``PR_SET_PDEATHSIG`` (the child dies
   with its parent);
4. install an audit hook (PEP 578) that refuses: writes and file-system changes outside the
   working directory, reads of other processes' ``/proc/<pid>`` entries, network sockets (only
   AF_UNIX socket pairs are allowed, never connected), ctypes foreign calls, signals to other
   processes, and, unless allowed, process creation;
5. run the code as ``__main__`` (echoing the value of a trailing expression, like a notebook) and
   print a traceback without the prelude's own frames.

Step 4's hook and the ``fork_exec`` guard are conveniences, on unless ``tools.python.audit_hook``
is off: CPython documents that hooks are not a security boundary (the code can reach the hook's
closure through ``gc`` and disarm it), so nothing depends on them. The OS layers (namespaces, a
private read-only root, seccomp, a non-root uid, rlimits; see backends.py) contain the code, and
the tests run every containment with the hook off too; the hook makes the common cases fail fast
with a clear message.
"""

import _thread
import ast
import builtins
import json
import os
import resource
import signal
import sys
import traceback
import types

_CODE_FILE = "main.py"


def _set_limits(cfg):
    def limit(res, soft, hard=None):
        hard = soft if hard is None else hard
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):  # cannot lower below usage (e.g. NPROC as root): keep going
            pass

    limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)  # SIGXCPU, then SIGKILL
    limit(resource.RLIMIT_AS, cfg["memory_bytes"])
    limit(resource.RLIMIT_NOFILE, cfg["max_open_files"])
    limit(resource.RLIMIT_NPROC, cfg["max_processes"])
    limit(resource.RLIMIT_FSIZE, cfg["max_file_bytes"])
    limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _prctl():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # no ctypes or no libc: the rlimits and the parent's kill still hold
        pass


def _make_hook(workdir, allow_subprocess):
    my_pid = str(os.getpid())
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    allowed_files = ("/dev/null",)
    process_events = frozenset(
        {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
         "subprocess.Popen", "os.startfile", "pty.spawn"}
    )
    path_events = frozenset(
        {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
         "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr", "os.mkfifo", "os.mknod",
         "shutil.rmtree", "shutil.chown"}
    )
    two_path_events = frozenset({"os.rename", "os.link", "os.symlink", "shutil.copyfile",
                                 "shutil.copytree", "shutil.move"})
    ctypes_events = frozenset(
        {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function",
         "ctypes.cdata", "ctypes.cdata/buffer", "ctypes.string_at", "ctypes.wstring_at"}
    )
    realpath, join, fsdecode, sep = os.path.realpath, os.path.join, os.fsdecode, os.sep
    # Re-entrancy guard per thread: realpath() below must not be checked by the hook itself, but
    # another thread's events during that time must be.
    busy = set()
    get_ident = _thread.get_ident

    def resolve(path):
        return realpath(join(workdir, fsdecode(path)))

    def inside(path):
        if isinstance(path, int):  # an fd: it was checked when it was opened
            return True
        real = resolve(path)
        return real == workdir or real.startswith(workdir + sep) or real in allowed_files

    def deny(what):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def other_proc(path):
        if isinstance(path, int):
            return False
        parts = resolve(path).split(sep)
        return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != my_pid

    def hook(event, args):
        ident = get_ident()
        if ident in busy:
            return
        busy.add(ident)
        try:
            if event == "open":
                path, mode, flags = args
                if path is None:
                    return
                if other_proc(path):
                    deny(f"reading another process's {fsdecode(path)}")
                writing = (flags or 0) & write_flags or (
                    isinstance(mode, str) and any(c in mode for c in "wax+"))
                if writing and not inside(path):
                    deny(f"writing {fsdecode(path)!r} outside the working directory")
            elif event in path_events:
                if args and not inside(args[0]):
                    deny(f"{event} on {fsdecode(args[0])!r} outside the working directory")
            elif event in two_path_events:
                if len(args) > 1 and not inside(args[1]):
                    deny(f"{event} to {fsdecode(args[1])!r} outside the working directory")
                if event == "os.rename" and not inside(args[0]):
                    deny(f"{event} of {fsdecode(args[0])!r} outside the working directory")
            elif event.startswith("socket."):
                if event == "socket.__new__" and len(args) > 1 and args[1] == 1:  # AF_UNIX
                    return
                if event == "socket.gethostname":
                    return
                deny("network access")
            elif event in process_events and not allow_subprocess:
                deny("starting processes")
            elif event in ctypes_events:
                deny("ctypes")
            elif event in ("os.kill", "os.killpg"):
                if event == "os.killpg" or str(args[0]) != my_pid:
                    deny("sending signals to other processes")
        finally:
            busy.discard(ident)

    return hook


def _block_raw_fork(allow_subprocess):
    """subprocess calls _posixsubprocess.fork_exec after its own audit event; make the direct call
    fail too, so the audit events above are the only door."""
    if allow_subprocess:
        return
    try:
        import _posixsubprocess
    except ImportError:
        return

    def fork_exec(*args, **kwargs):
        raise PermissionError("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = fork_exec


def _print_exception(exc):
    """The traceback as Python would print it, minus the prelude's frames (file "<string>")."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != "<string>"])
    sys.stderr.write("".join(te.format()))
    sys.stderr.flush()


def _run(source, echo):
    try:
        tree = ast.parse(source, _CODE_FILE)
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        return 1
    last = None
    if echo and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    module = types.ModuleType("__main__")
    module.__dict__.update({"__builtins__": builtins, "__file__": _CODE_FILE})
    sys.modules["__main__"] = module
    sys.argv = [_CODE_FILE]
    try:
        exec(compile(tree, _CODE_FILE, "exec"), module.__dict__)
        if last is not None:
            value = eval(compile(last, _CODE_FILE, "eval"), module.__dict__)
            if value is not None:
                print(repr(value))
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            # Statuses above 127 are kept for deaths by signal (128 + N): a plain 1 instead.
            return code if code is not None and 0 <= code <= 127 else (0 if code is None else 1)
        print(code, file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: B036 — report everything, like the interpreter does
        _print_exception(e)
        return 1
    return 0


def _become_reaper_if_init():
    """In a new pid namespace (unshare) this process is pid 1, which the kernel shields from
    default signal actions (a SIGSEGV or a self-kill would be ignored) and which must reap
    orphans. So pid 1 forks: the child runs the code, pid 1 reaps and exits with the child's
    status, 128 + N for a death by signal N (the shell convention the runner decodes)."""
    if os.getpid() != 1:
        return
    child = os.fork()
    if child == 0:
        return
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.waitstatus_to_exitcode(status))


def main():
    cfg = json.loads(sys.argv[1])
    _become_reaper_if_init()
    workdir = os.path.realpath(cfg["workdir"])
    with open(os.path.join(workdir, _CODE_FILE), encoding="utf-8", errors="replace") as f:
        source = f.read()
    _set_limits(cfg)
    _prctl()
    if cfg["audit_hook"]:  # in-process conveniences (clear messages); no containment needs them
        _block_raw_fork(cfg["allow_subprocess"])
        sys.addaudithook(_make_hook(workdir, cfg["allow_subprocess"]))
    code = _run(source, cfg["echo_last_expression"])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the model closed or broke its own stdout
            pass
    os._exit(code)  # skip atexit handlers the model's code may have registered


if __name__ == "__main__":
    main()
