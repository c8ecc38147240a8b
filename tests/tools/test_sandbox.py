"""Sandboxed Python: every hostile program ends as a failed result, the executor keeps going, and
nothing of the trainer is reachable. Runs for every backend: bwrap (the default, a requirement:
never skipped) and rlimit must work; unshare is skipped only where user namespaces are refused.
Containment category by category, with the audit hook on and off: test_containment.py."""

import dataclasses
import logging
import os
import signal
import socket
import struct
import threading
import time

import pytest

from toolrl_jax.config.core import ConfigError
from toolrl_jax.config.tools import PythonToolConfig
from toolrl_jax.tools import ParsedCall, PythonTool, SandboxUnavailable, ToolExecutor
from toolrl_jax.tools.sandbox import choose, select_plan
from toolrl_jax.tools.sandbox.seccomp import build_filter
from toolrl_jax.types import ToolStatus

LIMITS = dict(timeout_s=5.0, cpu_s=3, memory_mb=256, max_processes=16, capture_bytes=4096)


def _cfg(backend, **kw):
    return PythonToolConfig(sandbox=backend, **{**LIMITS, **kw})


def _available(backend):
    if backend in ("bwrap", "rlimit"):
        return True  # the default and the last resort: a failure to build them must fail the test
    try:
        select_plan(_cfg(backend))
        return True
    except SandboxUnavailable:
        return False


BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(not _available(b), reason=f"{b} not usable here"))
    for b in ("bwrap", "unshare", "rlimit")
]


@pytest.fixture(scope="module", params=BACKENDS)
def tool(request):
    return PythonTool(_cfg(request.param))


def run(tool, code):
    return tool.call({"code": code})


def test_backend_is_reported(tool):
    assert tool.backend.startswith(tool.cfg.sandbox + " (")


def test_ok_empty_error_statuses(tool):
    r = run(tool, "x = 6\nprint(x * 7)")
    assert (r.status, r.text) == (ToolStatus.OK, "42")
    assert run(tool, "y = 2\ny ** 5").text == "32"  # a trailing expression is echoed
    assert run(tool, "z = 1").status == ToolStatus.EMPTY
    err = run(tool, "def f():\n    return 1 / 0\nf()")
    assert err.status == ToolStatus.ERROR
    assert 'File "main.py", line 2, in f' in err.text and "ZeroDivisionError" in err.text
    assert "<string>" not in err.text  # the prelude's frames are hidden
    assert run(tool, "def f(:").status == ToolStatus.ERROR
    assert run(tool, "import sys; sys.exit(3)").status == ToolStatus.ERROR
    assert run(tool, "import sys; sys.exit(0)").status == ToolStatus.EMPTY
    # An exit status that looks like a death by signal is not reported as one.
    r = run(tool, "import sys; sys.exit(139)")
    assert r.status == ToolStatus.ERROR and "signal" not in r.text
    assert run(tool, "   ").status == ToolStatus.INVALID_CALL


def test_stderr_fails_marks_a_call_that_wrote_to_stderr(tool):
    """TAO-RL's rule (tools.python.stderr_fails): any stderr output fails the call, the model
    still sees it — stdout first, then stderr; off, one pipe keeps the order as written."""
    strict = PythonTool(dataclasses.replace(tool.cfg, stderr_fails=True), plan=tool.plan)
    warn = "import sys\nprint('a')\nprint('careful', file=sys.stderr)\nprint('b')"
    def seen(t, code):
        r = run(t, code)
        return r.status, r.text

    for _ in range(3):  # the same text every time (arrival order would vary)
        assert seen(strict, warn) == (ToolStatus.ERROR, "a\nb\ncareful")
    assert seen(tool, warn) == (ToolStatus.OK, "a\ncareful\nb")
    assert tool.cfg.stderr_fails is None  # a tool built outside a run: off
    assert seen(strict, "print(6 * 7)") == (ToolStatus.OK, "42")
    assert run(strict, "z = 1").status == ToolStatus.EMPTY
    # A write below Python's sys.stderr counts too.
    assert seen(strict, "import os\nos.write(2, b'raw\\n')\nprint(1)") == (ToolStatus.ERROR,
                                                                         "1\nraw")
    warned = run(strict, "import warnings\nwarnings.warn('careful')\nprint(1)")
    assert warned.status == ToolStatus.ERROR and warned.text.startswith("1\n")
    assert "UserWarning: careful" in warned.text
    crashed = run(strict, "print('x')\n1 / 0")
    assert crashed.status == ToolStatus.ERROR and crashed.text.startswith("x\nTraceback")
    assert crashed.text.endswith("ZeroDivisionError: division by zero")


RUNAWAY = [
    "while True:\n    pass",
    "import time\ntime.sleep(100)",
    "import os\nos.close(1); os.close(2)\nwhile True:\n    pass",  # closes its output first
]


def test_runaway_code_times_out_within_limit_plus_one_second(tool):
    """Three runaway programs at once (one batch): each is a timeout within limit + 1 s."""
    tool = PythonTool(_cfg(tool.cfg.sandbox, timeout_s=0.5))
    start = time.monotonic()
    with ToolExecutor({"python": tool}, max_workers=len(RUNAWAY)) as ex:
        results = ex.run([ParsedCall("python", {"code": c}, "", 0, 0) for c in RUNAWAY])
    assert time.monotonic() - start < tool.cfg.timeout_s + 1.0
    for r in results:
        assert r.status == ToolStatus.TIMEOUT and "time limit" in r.text
        assert r.elapsed_s < tool.cfg.timeout_s + 1.0


def test_cpu_rlimit_kills_busy_loop(tool):
    cpu_tool = PythonTool(_cfg(tool.cfg.sandbox, cpu_s=1, timeout_s=20.0))
    start = time.monotonic()
    r = run(cpu_tool, "while True:\n    pass")
    assert r.status == ToolStatus.TIMEOUT and "CPU time limit" in r.text
    assert time.monotonic() - start < 10.0


BOMBS = [
    ("x = bytearray(10 ** 10)", "MemoryError"),
    ("a = []\nwhile True:\n    a.append(' ' * 10 ** 6)", "MemoryError"),
    ("import os\nwhile True:\n    os.fork()", "starting processes is not allowed"),
    ("import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])", "not allowed"),
    ("import _posixsubprocess\n_posixsubprocess.fork_exec()", "not allowed"),
    ("import ctypes\nctypes.CDLL(None).fork()", "ctypes is not allowed"),
    ("import os\nos.kill(1, 9)", "signals to other processes"),
    ("import os\nos.killpg(0, 9)", "signals to other processes"),
]


def test_bombs_end_as_errors_and_the_executor_keeps_going(tool):
    # A roomier clock than the timeout tests: filling 256 MB is slow on a busy 2-core host.
    tool = PythonTool(_cfg(tool.cfg.sandbox, timeout_s=10.0))
    calls = [ParsedCall("python", {"code": code}, "", 0, 0) for code, _ in BOMBS]
    calls.append(ParsedCall("python", {"code": "print('still alive')"}, "", 0, 0))
    with ToolExecutor({"python": tool}, max_workers=4) as ex:
        *bad, good = ex.run(calls)
        for (code, needle), r in zip(BOMBS, bad, strict=True):
            assert r.status == ToolStatus.ERROR and needle in r.text, (code, r.text)
        assert (good.status, good.text) == (ToolStatus.OK, "still alive")
        assert ex.run_one(ParsedCall("python", {"code": "print(1)"}, "", 0, 0)).text == "1"


def test_huge_print_is_truncated_without_buffering_it(tool):
    start = time.monotonic()
    r = run(tool, "print('x' * 100_000_000)")
    assert r.status == ToolStatus.ERROR and r.truncated
    assert "[output truncated" in r.text and len(r.text) < tool.cfg.capture_bytes + 200
    r = run(tool, "while True:\n    print('y' * 1000)")
    assert r.status == ToolStatus.ERROR and r.truncated
    assert time.monotonic() - start < 5.0
    assert run(tool, "print('ok')").text == "ok"


def test_invalid_utf8_output_is_replaced(tool):
    r = run(tool, "import sys\n_ = sys.stdout.buffer.write(b'a\\xffb\\n')")
    assert r.status == ToolStatus.OK and r.text == "a\ufffdb"


def test_writes_outside_the_temp_dir_are_refused(tool, tmp_path):
    target = tmp_path / "escaped.txt"
    for code in [
        f"open({str(target)!r}, 'w').write('pwned')",
        f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))",
        f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('x')",
        "open('../outside.txt', 'w').write('x')",
    ]:
        r = run(tool, code)
        assert r.status == ToolStatus.ERROR, (code, r.text)
    assert not target.exists()
    # Inside its own temp dir the code may write, and the dir is deleted afterwards.
    r = run(tool, "import os\nopen('f.txt', 'w').write('hi')\nprint(os.getcwd())\n"
                  "print(open('f.txt').read())")
    workdir, content = r.text.splitlines()
    assert content == "hi" and not os.path.exists(workdir)


def test_network_is_blocked(tool):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    try:
        r = run(tool, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
        assert r.status == ToolStatus.ERROR, r.text
        r = run(tool, "import urllib.request\nurllib.request.urlopen('http://1.1.1.1', timeout=1)")
        assert r.status == ToolStatus.ERROR
    finally:
        t.join()
        server.close()
    assert not accepted
    # AF_UNIX socket pairs (asyncio's self-pipe) still work.
    r = run(tool, "import asyncio\nasync def f():\n    return 5\nprint(asyncio.run(f()))")
    assert r.text == "5", r.text


def test_nothing_of_the_trainer_is_reachable(tool, monkeypatch):
    secret = "toolrl-secret-4242"
    monkeypatch.setenv("TOOLRL_TEST_SECRET", secret)
    pid = os.getpid()
    r = run(tool, "import os\nprint(sorted(os.environ))\nprint(os.environ.get('TOOLRL_TEST_SECRET'))")
    assert secret not in r.text and "TOOLRL_TEST_SECRET" not in r.text
    assert r.text.splitlines()[-1] == "None"
    for path in (f"/proc/{pid}/environ", f"/proc/{pid}/mem", f"/proc/{pid}/cmdline"):
        r = run(tool, f"print(open({path!r}, 'rb').read(4096))")
        assert r.status == ToolStatus.ERROR and secret not in r.text, (path, r.text)
    # Its own /proc entries stay readable (some libraries need them).
    assert run(tool, "print(len(open('/proc/self/status').read()) > 0)").text == "True"


def _sandbox_process_uids():
    """Host uids (real, effective) of every running sandbox process, seen from the host's /proc
    (inside, user namespaces may show any uid)."""
    uids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:  # the prelude's settings argument
                if b"echo_last_expression" not in f.read():
                    continue
            with open(f"/proc/{entry}/status") as f:
                line = next(x for x in f if x.startswith("Uid:"))
            uids.append(tuple(int(u) for u in line.split()[1:3]))
        except (OSError, StopIteration):
            pass
    return uids


def test_never_runs_as_root(tool):
    if os.geteuid() != 0:
        pytest.skip("trainer is not root: the code runs as the trainer's uid")
    assert tool.plan.uid == tool.cfg.sandbox_uid
    result = []
    t = threading.Thread(target=lambda: result.append(run(tool, "import time\ntime.sleep(1.5)")))
    t.start()
    seen = []
    deadline = time.monotonic() + 1.0
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _sandbox_process_uids()
    t.join()
    assert seen and result[0].status == ToolStatus.EMPTY
    uid = tool.cfg.sandbox_uid
    assert all(u == (uid, uid) for u in seen), seen


def _processes_of(uid):
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    if any(line.split()[1:2] == [str(uid)] for line in f if line.startswith("Uid:")):
                        n += 1
            except OSError:
                pass
    return n


def test_real_fork_bomb_with_subprocesses_allowed(tool):
    """With allow_subprocess, RLIMIT_NPROC (non-root uid) bounds a real fork bomb and the group
    kill (or pid namespace) removes every process afterwards. Refused when the code would run as
    root, where RLIMIT_NPROC does not apply."""
    cfg = _cfg(tool.cfg.sandbox, allow_subprocess=True, max_processes=8, timeout_s=0.5)
    if os.geteuid() == 0 and tool.plan.uid is None:
        with pytest.raises(SandboxUnavailable, match="non-root uid"):
            PythonTool(cfg)
        return
    if os.geteuid() != 0:
        pytest.skip("trainer is not root: RLIMIT_NPROC counts the trainer's own threads")
    bomb_tool = PythonTool(cfg)
    before = _processes_of(cfg.sandbox_uid)
    r = run(bomb_tool, "import os\nwhile True:\n    try:\n        os.fork()\n"
                       "    except OSError:\n        pass")
    assert r.status in (ToolStatus.TIMEOUT, ToolStatus.ERROR)
    deadline = time.monotonic() + 3
    while _processes_of(cfg.sandbox_uid) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of(cfg.sandbox_uid) <= before
    assert run(bomb_tool, "print('after')").text == "after"


def test_named_backend_that_cannot_work_raises():
    with pytest.raises(SandboxUnavailable, match="no usable Python sandbox"):
        select_plan(PythonToolConfig(sandbox="rlimit", executable="/nonexistent/python"))


def test_signal_names_in_crash_reports(tool):
    r = run(tool, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert r.status == ToolStatus.ERROR and signal.SIGSEGV.name in r.text, r.text


def test_auto_refuses_without_bubblewrap(monkeypatch):
    """No silent downgrade: without bubblewrap 'auto' fails, naming the fix and the opt-outs."""
    monkeypatch.setattr(choose, "_cache", {})
    monkeypatch.setattr(choose, "tool_path", lambda backend: "")
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap") as err:
        select_plan(PythonToolConfig())
    assert "tools.python.sandbox='unshare' or 'rlimit'" in str(err.value)


@pytest.mark.parametrize("backend", ["unshare", "rlimit"])
def test_weaker_backend_by_name_warns_in_one_line(backend, monkeypatch, caplog):
    if not _available(backend):
        pytest.skip(f"{backend} not usable here")
    monkeypatch.setattr(choose, "_cache", {})
    with caplog.at_level(logging.WARNING, logger=choose.__name__):
        plan = select_plan(_cfg(backend))
    assert plan.backend == backend
    (record,) = [r for r in caplog.records if r.name == choose.__name__]
    message = record.getMessage()
    assert "\n" not in message and "does NOT contain the host file system" in message
    assert "memory across processes" in message and "host UNIX sockets" in message


def test_disk_limit_is_validated():
    with pytest.raises(ConfigError, match="disk_mb"):
        PythonToolConfig(disk_mb=0).validate("config.tools.python")


@pytest.mark.parametrize("abi", ["x86_64", "aarch64"])
@pytest.mark.parametrize("allow_subprocess", [False, True])
def test_seccomp_program_is_well_formed(abi, allow_subprocess):
    """Every jump of the BPF program lands on an instruction and it ends in returns (the kernel
    would refuse it otherwise; only this machine's ABI is run for real, in test_containment)."""
    prog = build_filter(abi, allow_subprocess)
    ins = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    for i, (code, jt, jf, _) in enumerate(ins):
        if code & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < len(ins)
    assert [code for code, *_ in ins[-3:]] == [0x06] * 3
