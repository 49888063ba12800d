"""Linux capabilities a child process keeps, and taking the others away before it starts.

For a process of uid 0, execve() sets the permitted and effective sets to the bounding set
(plus the inheritable set). So the child, before exec: drops every other capability from its
bounding set (needs CAP_SETPCAP, which a daemon without it cannot do), sets no_new_privs, and
lowers its permitted and effective sets and empties its inheritable and ambient ones. With
no_new_privs, execve() never grants more than the permitted set held before it, so the limit
holds with or without CAP_SETPCAP.

Run as a program, it becomes PROGRAM holding only the capabilities it is given, and with
``--end-with PID`` ends (SIGTERM) when the process PID that started it does:
``python -I -S capabilities.py [--keep N,N...] [--end-with PID] -- PROGRAM [ARG...]``; without
options (``capabilities.py PROGRAM [ARG...]``) PROGRAM holds none at all. The daemon starts
borg and rclone through it, and borg starts ssh through it. It imports only the standard library,
and the daemon needs no code of its own to run between fork and exec, so its children are
started with vfork, in a fraction of a millisecond whatever the daemon's size.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from functools import cache


class Capability(IntEnum):
    """The numbers of <linux/capability.h> for the capabilities any child of the daemon may keep."""

    CHOWN = 0
    DAC_OVERRIDE = 1
    DAC_READ_SEARCH = 2
    FOWNER = 3
    FSETID = 4
    MKNOD = 27
    SETFCAP = 31


_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522
_CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
_FALLBACK_LAST_CAP = 63

_libc = ctypes.CDLL(None, use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_Sets = _Data * 2  # bits 0-31, then 32-63


def mask(capabilities: Iterable[Capability]) -> int:
    """The bit mask of a set of capabilities, as /proc/<pid>/status shows it (in hex)."""
    bits = 0
    for capability in capabilities:
        bits |= 1 << capability
    return bits


@cache
def last_capability() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open(_CAP_LAST_CAP_FILE, encoding="ascii") as file:
            return int(file.read())
    except (OSError, ValueError):
        return _FALLBACK_LAST_CAP


def keep_only(kept: Iterable[Capability]) -> Callable[[], None]:
    """A function to run in a child between fork and exec that leaves it only ``kept``
    (of those the daemon holds). Prepared here, so the child only makes system calls."""
    kept_bits = mask(kept)
    dropped = [number for number in range(last_capability() + 1) if not kept_bits >> number & 1]
    header = _Header(_CAPABILITY_VERSION_3, 0)
    sets = _Sets()

    def limit() -> None:
        for number in dropped:
            if _libc.prctl(_PR_CAPBSET_DROP, number, 0, 0, 0) != 0:
                if ctypes.get_errno() == errno.EPERM:
                    break  # no CAP_SETPCAP: no_new_privs and the permitted set below still hold
                # EINVAL: a number this kernel does not know
        _call(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _call(_libc.capget(ctypes.byref(header), sets), "capget")
        for index, data in enumerate(sets):
            word = kept_bits >> (32 * index) & 0xFFFFFFFF
            data.effective &= word
            data.permitted &= word
            data.inheritable = 0
        _call(_libc.capset(ctypes.byref(header), sets), "capset")
        if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
            if ctypes.get_errno() != errno.EINVAL:  # a kernel before ambient capabilities has none
                _call(-1, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")

    return limit


def _call(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


# This module run as a program: it needs only the standard library, so without site it starts in ~10 ms.
WRAPPER = (sys.executable, "-I", "-S", __file__)


def wrapped(program: Sequence[str], kept: Iterable[Capability], parent: int) -> list[str]:
    """The argv that runs ``program`` through this module, keeping only ``kept``, ending with ``parent``."""
    numbers = ",".join(str(int(capability)) for capability in sorted(kept))
    return [*WRAPPER, f"--keep={numbers}", f"--end-with={parent}", "--", *program]


def end_with(parent: int) -> None:
    """SIGTERM when the parent ends; at once if it already has."""
    _call(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


_USAGE = "usage: python -I -S capabilities.py [--keep N,N...] [--end-with PID] -- PROGRAM [ARG...]"


def main(argv: list[str]) -> None:
    """Replace this process with the program holding only the capabilities named."""
    kept: list[Capability] = []
    if argv[:1] and argv[0].startswith("--"):
        if "--" not in argv:
            sys.exit(_USAGE)
        options, argv = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        for option in options:
            name, _, value = option.partition("=")
            if name == "--keep":
                kept = [Capability(int(number)) for number in value.split(",") if number]
            elif name == "--end-with":
                end_with(int(value))
            else:
                sys.exit(_USAGE)
    if not argv:
        sys.exit(_USAGE)
    keep_only(kept)()
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        sys.stderr.write(f"cannot run {argv[0]}: {error.strerror}\n")
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
