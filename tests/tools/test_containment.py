"""Containment of hostile model code under the default sandbox (issue 14), category by category.

Every probe is a program that prints ``LEAK`` when it escapes (or leaves a trace the host checks),
and each runs twice on the default backend: with the in-process audit hook and without it, since
nothing may depend on the hook. The probes that a sandbox without OS isolation fails are also run
on the ``rlimit`` backend with the hook off, where they must report the leak: so each probe is
shown able to fail.
"""

import os
import socket
import stat
import tempfile
import threading
import time
import uuid

import pytest

import toolrl_jax
from toolrl_jax.config.tools import PythonToolConfig
from toolrl_jax.tools import ParsedCall, PythonTool, ToolExecutor
from toolrl_jax.types import ToolStatus

LIMITS = dict(timeout_s=10.0, cpu_s=5, memory_mb=128, max_processes=8, max_open_files=32,
              max_file_mb=2, disk_mb=8, capture_bytes=4096)


def _cfg(**kw):
    return PythonToolConfig(**{**LIMITS, **kw})


@pytest.fixture(scope="module", params=[True, False], ids=["hook", "no_hook"])
def contained(request):
    """The default backend ('auto'), with and without the audit hook."""
    tool = PythonTool(_cfg(audit_hook=request.param))
    assert tool.plan.backend == "bwrap", tool.backend
    return tool


@pytest.fixture(scope="module")
def uncontained():
    """rlimit without the hook: the control on which the probes must see their leak."""
    return PythonTool(_cfg(sandbox="rlimit", audit_hook=False))


class Host:
    """Things of the trainer's machine a probe reaches for, created world-accessible so that only
    the sandbox, not file permissions, keeps the code away from them."""

    def __init__(self):
        self.tag = f"toolrl_probe_{uuid.uuid4().hex[:10]}"
        self.dir = tempfile.mkdtemp(prefix=self.tag)
        os.chmod(self.dir, 0o777)
        self.dataset = os.path.join(self.dir, "answers.jsonl")
        with open(self.dataset, "w") as f:
            f.write('{"answer": 42}\n')
        os.chmod(self.dataset, 0o644)
        self.shm = f"/dev/shm/{self.tag}"
        with open(self.shm, "w") as f:
            f.write("host shared memory")
        os.chmod(self.shm, 0o644)

    def remove(self):
        for path in (self.shm, f"/var/tmp/{self.tag}", f"/dev/shm/{self.tag}_w"):
            if os.path.exists(path):
                os.remove(path)
        for name in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, name))
        os.rmdir(self.dir)


@pytest.fixture
def host():
    h = Host()
    yield h
    h.remove()


def run(tool, code):
    return tool.call({"code": code})


def _verdict(tool, code):
    r = run(tool, code)
    return "LEAK" in r.text, r


# --- probes: each returns True when the code escaped -------------------------------------------


def probe_reads_host_files(tool, host):
    source = os.path.abspath(toolrl_jax.__file__)
    paths = [host.dataset, source, os.path.dirname(source), "/etc/passwd", "/root", "/home"]
    leaked, r = _verdict(tool, f"import os\nseen = [p for p in {paths!r} if os.path.exists(p)]\n"
                               "print('LEAK' if seen else 'contained', seen)")
    return leaked


def probe_writes_host_files(tool, host):
    """Writes by path, after chdir and through dir_fd: host temp dirs, /dev/shm, /var/tmp."""
    targets = [os.path.join(host.dir, "w1"), f"/var/tmp/{host.tag}", f"/dev/shm/{host.tag}_w"]
    code = f"""import os
for t in {targets!r}:
    for how in ("path", "chdir", "dir_fd"):
        try:
            d, name = os.path.split(t)
            if how == "path":
                os.close(os.open(t, os.O_CREAT | os.O_WRONLY))
            elif how == "chdir":
                os.chdir(d)
                os.close(os.open(name + "c", os.O_CREAT | os.O_WRONLY))
            else:
                fd = os.open(d, os.O_RDONLY)
                os.close(os.open(name + "f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        except OSError:
            pass
"""
    run(tool, code)
    left = os.listdir(host.dir)
    left.remove("answers.jsonl")
    return bool(left) or any(os.path.exists(t + s) for t in targets[1:] for s in ("", "c", "f"))


def probe_root_is_writable(tool, host):
    code = """import os
hits = []
for d in ("/", "/usr", "/etc", "/dev", "/dev/shm", "/proc", "/bin"):
    try:
        with open(os.path.join(d, "x"), "w") as f:
            f.write("x")
        hits.append(d)
    except OSError:
        pass
print("LEAK" if hits else "contained", hits)"""
    return _verdict(tool, code)[0]


def probe_sees_a_concurrent_calls_files(tool, host):
    """Call A writes a file and waits; call B, meanwhile, looks for it everywhere it could be."""
    marker = host.tag + ".secret"
    a = f"open({marker!r}, 'w').write('peer')\nimport time\ntime.sleep(2.0)\nprint('a done')"
    b = (f"import glob\nhits = glob.glob('/tmp/{marker}') + glob.glob('/tmp/*/{marker}') + "
         f"glob.glob('/sandbox/{marker}') + glob.glob('/tmp/*/*/{marker}')\n"
         "print('LEAK' if hits else 'contained', hits)")
    with ToolExecutor({"python": tool}, max_workers=2) as ex:
        first = ex._pool.submit(run, tool, a)
        time.sleep(0.7)  # A has started and written its file
        leaked, _ = _verdict(tool, b)
        assert first.result().text == "a done"
    return leaked


def probe_fills_the_disk(tool, host):
    """Many files, each under the per-file limit, together past the call's disk limit."""
    limit = tool.cfg.disk_mb << 20
    code = f"""import os
total = 0
try:
    for i in range({3 * tool.cfg.disk_mb}):
        with open(f"f{{i}}", "wb") as f:
            f.write(b"x" * (1 << 20))
        total += 1 << 20
except OSError as e:
    print(e)
print("LEAK" if total > {limit} else "contained", total)"""
    return _verdict(tool, code)[0]


def probe_memory_across_processes(tool, host):
    """Children that each reserve most of the address-space limit, all alive at once."""
    each = (tool.cfg.memory_mb * 3 // 4) << 20
    code = f"""import os, time
held = {each}  # this process
r, w = os.pipe()
for _ in range(4):
    try:
        pid = os.fork()
    except OSError as e:
        print(e)
        break
    if pid == 0:
        try:
            block = bytearray({each})
            os.write(w, b"1")
        finally:
            time.sleep(1.0)
            os._exit(0)
os.close(w)
block = bytearray({each})
time.sleep(0.3)
os.set_blocking(r, False)
try:
    held += {each} * len(os.read(r, 64))
except BlockingIOError:
    pass
print("LEAK" if held > {tool.cfg.memory_mb << 20} else "contained", held >> 20, "MB")"""
    return _verdict(tool, code)[0]


def probe_host_unix_sockets(tool, host):
    path = os.path.join(host.dir, "host.sock")
    abstract = "\0" + host.tag
    servers = []
    for address in (path, abstract):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(address)
        s.listen(4)
        s.settimeout(0.05)
        servers.append(s)
    os.chmod(path, 0o777)
    code = f"""import socket
hits = []
for address in {[path, abstract]!r}:
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(address)
        hits.append(address)
    except OSError:
        pass
print("LEAK" if hits else "contained", hits)"""
    try:
        leaked, _ = _verdict(tool, code)
        for s in servers:
            try:
                s.accept()[0].close()
                leaked = True
            except OSError:
                pass
    finally:
        for s in servers:
            s.close()
        os.remove(path)
    return leaked


def probe_host_dev_shm(tool, host):
    code = f"""import os
print("LEAK" if os.path.exists({host.shm!r}) or len(os.listdir("/dev/shm")) else "contained")"""
    return _verdict(tool, code)[0]


def probe_host_processes(tool, host):
    me = os.getpid()
    code = f"""import os
pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
try:
    os.kill({me}, 0)
    alive = True
except PermissionError as e:  # the kernel's refusal means it exists; the hook's says nothing
    alive = not str(e).startswith("sandbox:")
except ProcessLookupError:
    alive = False
print("LEAK" if alive or {me} in pids or len(pids) > 4 else "contained", pids)"""
    return _verdict(tool, code)[0]


def probe_network(tool, host):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.05)
    port = server.getsockname()[1]
    code = f"""import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
    print("LEAK")
except OSError as e:
    print("contained", e)"""
    try:
        leaked, _ = _verdict(tool, code)
        try:
            server.accept()[0].close()
            leaked = True
        except OSError:
            pass
    finally:
        server.close()
    return leaked


# Probes that a sandbox without OS isolation fails: each must report its leak there.
LEAKY_WITHOUT_ISOLATION = [
    probe_reads_host_files, probe_writes_host_files, probe_sees_a_concurrent_calls_files,
    probe_fills_the_disk, probe_memory_across_processes, probe_host_unix_sockets,
    probe_host_dev_shm, probe_host_processes, probe_network,
]
PROBES = [*LEAKY_WITHOUT_ISOLATION, probe_root_is_writable]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.__name__.removeprefix("probe_"))
def test_default_sandbox_contains(contained, host, probe):
    assert not probe(contained, host)


@pytest.mark.parametrize("probe", LEAKY_WITHOUT_ISOLATION,
                         ids=lambda p: p.__name__.removeprefix("probe_"))
def test_each_probe_can_fail(uncontained, host, probe):
    """The control: without OS isolation the same probe sees its leak."""
    if os.geteuid() == 0 and probe is probe_reads_host_files:
        assert uncontained.plan.uid is not None  # still a non-root uid, yet world-readable files
    assert probe(uncontained, host)


# --- limits of one call, as a whole ----------------------------------------------------------


def test_disk_limit_is_a_clear_error(contained):
    r = run(contained, "for i in range(100):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))")
    assert r.status == ToolStatus.ERROR and "No space left on device" in r.text, r.text
    # /tmp is the same tmpfs: the call's only writable place, and a fresh one each call.
    r = run(contained, "import os\nopen('/tmp/a', 'w').write('1')\nprint(sorted(os.listdir('.')))")
    assert r.text == "['a', 'main.py']"


def test_processes_are_refused_by_the_kernel(contained):
    """fork, subprocess and libc's fork through ctypes fail even with the hook off; threads work."""
    r = run(contained, "import os\nos.fork()")
    assert r.status == ToolStatus.ERROR and ("not permitted" in r.text or "not allowed" in r.text)
    if not contained.cfg.audit_hook:
        r = run(contained, "import ctypes\nprint(ctypes.CDLL(None).fork())")
        assert r.text == "-1", r.text
        r = run(contained, "import subprocess\nsubprocess.run(['true'])")
        assert r.status == ToolStatus.ERROR and "Operation not permitted" in r.text, r.text
    r = run(contained, "import threading\nt = threading.Thread(target=print, args=('thread',))\n"
                       "t.start(); t.join()")
    assert r.text == "thread"


def test_nested_namespaces_are_refused(contained):
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.unshare(0x10000000), libc.unshare(0x20000), ctypes.get_errno())")
    if contained.cfg.audit_hook:
        assert "ctypes is not allowed" in run(contained, code).text
    else:
        assert run(contained, code).text == "-1 -1 1"  # EPERM


def test_memory_limit_covers_threads(contained):
    code = ("import threading\nblocks = []\ndef grab():\n    try:\n"
            "        blocks.append(bytearray(80 << 20))\n    except MemoryError:\n"
            "        print('MemoryError')\n"
            "ts = [threading.Thread(target=grab) for _ in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\nprint(len(blocks))")
    r = run(contained, code)
    assert "MemoryError" in r.text and int(r.text.splitlines()[-1]) < 3, r.text


def test_open_files_limit(contained):
    r = run(contained, "fs = [open('/dev/null') for _ in range(1000)]")
    assert r.status == ToolStatus.ERROR and "Too many open files" in r.text


def test_process_limit_is_per_call():
    """With subprocesses allowed, each of two concurrent calls may hold max_processes - 2 forks
    (bubblewrap's init and the interpreter count too): neither starves the other, neither
    exceeds its own limit."""
    tool = PythonTool(_cfg(allow_subprocess=True, audit_hook=False))
    code = """import os, time
n = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    n += 1
print(n)"""
    with ToolExecutor({"python": tool}, max_workers=2) as ex:
        results = ex.run([ParsedCall("python", {"code": code}, "", 0, 0)] * 2)
    counts = [int(r.text) for r in results]
    assert counts == [tool.cfg.max_processes - 2] * 2, counts


def test_wall_time_and_output_limits(contained):
    tool = PythonTool(_cfg(timeout_s=0.5, audit_hook=contained.cfg.audit_hook))
    start = time.monotonic()
    r = run(tool, "import os, time\nos.close(1); os.close(2)\ntime.sleep(100)")
    assert r.status == ToolStatus.TIMEOUT and time.monotonic() - start < 1.5
    r = run(contained, "while True:\n    print('y' * 1000)")
    assert r.status == ToolStatus.ERROR and r.truncated and "[output truncated" in r.text


def test_hostile_batch_and_the_rollout_goes_on(contained, host):
    """A batch of hostile programs: each ends as a failed (or empty) result, the executor answers
    the next call, and nothing of the trainer's files changed."""
    before = sorted(os.listdir(host.dir))
    hostile = [
        "import gc\nfor o in gc.get_objects():\n    pass\nopen('/etc/x', 'w')",
        f"import os\nos.chdir({host.dir!r})",
        "import os\nos.kill(1, 9)\nos.kill(os.getppid(), 9)",
        "import ctypes\n_ = ctypes.CDLL(None).fork()",
        "x = bytearray(10 ** 10)",
        "while True:\n    pass",
    ]
    tool = PythonTool(_cfg(timeout_s=2.0, cpu_s=1, audit_hook=contained.cfg.audit_hook))
    with ToolExecutor({"python": tool}, max_workers=3) as ex:
        results = ex.run([ParsedCall("python", {"code": c}, "", 0, 0) for c in hostile])
        for code, r in zip(hostile, results, strict=True):
            assert r.status in (ToolStatus.ERROR, ToolStatus.EMPTY, ToolStatus.TIMEOUT), (code, r)
        assert ex.run_one(ParsedCall("python", {"code": "print('next')"}, "", 0, 0)).text == "next"
    assert sorted(os.listdir(host.dir)) == before
    assert stat.S_IMODE(os.stat(host.dataset).st_mode) == 0o644


def test_audit_hook_can_be_disarmed_but_nothing_depends_on_it(contained):
    """The issue's attack: replace the hook's ``deny`` through gc, then write outside. The hook
    is gone, the write still fails (read-only root)."""
    code = """import gc, types
for o in gc.get_objects():
    if isinstance(o, types.FunctionType) and o.__name__ == "hook" and o.__closure__:
        for cell in o.__closure__:
            if callable(cell.cell_contents) and getattr(cell.cell_contents, "__name__", "") == "deny":
                cell.cell_contents = lambda what: None
open("/usr/pwned", "w").write("x")"""
    r = run(contained, code)
    assert r.status == ToolStatus.ERROR and "pwned" in r.text
    assert not os.path.exists("/usr/pwned")


def test_no_host_thread_or_fd_leaks_after_many_calls(contained):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        assert run(contained, "print(1)").text == "1"
    assert len(os.listdir("/proc/self/fd")) == before
    assert threading.active_count() < 50
