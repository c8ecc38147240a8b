"""A seccomp-BPF program for bubblewrap's ``--seccomp FD``: what the kernel refuses the code.

Why in the kernel: the audit hook is in-process and the model's code can switch it off (or call
libc through ctypes), so "no subprocesses" must hold without it. With process creation refused,
one call is exactly one process (plus its threads, which share one address space), so RLIMIT_AS
bounds the memory of the whole call and RLIMIT_NOFILE its open files.

What the filter does, for the host's own system-call ABI (x86_64 or aarch64):

* ``unshare``, ``setns`` and ``clone`` with a namespace flag fail with EPERM, always: a nested
  user namespace would let the code mount a tmpfs of its own, outside the call's disk limit;
* unless subprocesses are allowed, ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD`` fail
  with EPERM (``os.fork``, ``subprocess``, ``os.system``, libc's fork through ctypes all end there);
* ``clone3`` fails with ENOSYS: its flags sit in a struct a BPF filter cannot read, and glibc
  falls back to ``clone`` on ENOSYS, so threads and processes still start through the checks above;
* any other ABI (i386 through ``int 0x80``, x32 system-call numbers) fails with EPERM, so the
  numbers above cannot be dodged by switching ABI.

Everything else is allowed: the namespaces, the read-only root and the rlimits contain the rest.
"""

from __future__ import annotations

import errno
import functools
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

# Offsets in struct seccomp_data: nr, arch, then (after the instruction pointer) args[6] as u64;
# the low half of args[0] comes first on these little-endian ABIs.
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_CLONE_THREAD = 0x00010000
# CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
_CLONE_NEW_NAMESPACES = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000

# AUDIT_ARCH_* and the system-call numbers the filter names, per ABI.
_ABIS = {
    "x86_64": {"arch": 0xC000003E, "clone": 56, "clone3": 435, "namespaces": (272, 308),
               "fork": (57, 58), "x32": True},
    "aarch64": {"arch": 0xC00000B7, "clone": 220, "clone3": 435, "namespaces": (97, 268),
                "fork": (), "x32": False},
}
_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def host_abi() -> str | None:
    """The ABI name of this machine if the filter knows it, else None."""
    machine = platform.machine().lower()
    machine = _MACHINE_ALIASES.get(machine, machine)
    return machine if machine in _ABIS else None


def build_filter(abi: str, allow_subprocess: bool) -> bytes:
    """The BPF program (``struct sock_filter[]``, native byte order) described in the module doc."""
    spec = _ABIS[abi]
    # Jump targets are labels resolved once the program's length is known.
    prog: list[tuple[int, object, object, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, "next", "eperm", spec["arch"]),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if spec["x32"]:
        prog.append((_JGE_K, "eperm", "next", _X32_BIT))
    refused = spec["namespaces"] + (() if allow_subprocess else spec["fork"])
    prog += [(_JEQ_K, "eperm", "next", nr) for nr in refused]
    prog += [
        (_JEQ_K, "enosys", "next", spec["clone3"]),
        (_JEQ_K, "next", "allow", spec["clone"]),
        (_LD_W_ABS, 0, 0, _ARG0_LOW),
        (_JSET_K, "eperm", "next", _CLONE_NEW_NAMESPACES),
    ]
    if not allow_subprocess:  # a thread shares the caller's memory and limits; a process does not
        prog.append((_JSET_K, "allow", "eperm", _CLONE_THREAD))
    labels = {"allow": len(prog), "eperm": len(prog) + 1, "enosys": len(prog) + 2}
    prog += [
        (_RET_K, 0, 0, _RET_ALLOW),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
    ]
    return b"".join(_encode(i, ins, labels) for i, ins in enumerate(prog))


@functools.cache
def seccomp_program(allow_subprocess: bool) -> bytes:
    """This machine's filter; raises :class:`OSError` on an ABI the filter does not know."""
    abi = host_abi()
    if abi is None:
        raise OSError(f"no seccomp filter for machine {platform.machine()!r} "
                      f"(known: {', '.join(_ABIS)})")
    return build_filter(abi, allow_subprocess)


def _encode(index: int, ins: tuple, labels: dict[str, int]) -> bytes:
    code, jt, jf, k = ins

    def offset(target) -> int:
        if target == "next":
            return 0
        if isinstance(target, str):
            return labels[target] - index - 1  # jumps count instructions after this one
        return target

    return struct.pack("=HBBI", code, offset(jt), offset(jf), k)
