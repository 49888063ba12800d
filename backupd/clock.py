"""Wall-clock time for the schedule: what time it is, and sleeping until a wall time.

The system clock sleeps on a Linux timerfd armed on CLOCK_REALTIME with
TFD_TIMER_CANCEL_ON_SET: it fires at the wall time even across a suspend, and wakes early
when the clock is set (NTP step, manual change), so the caller can plan again. Nothing
polls. `TrioWallClock` follows trio's clock instead, so tests can use `autojump_clock`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from datetime import timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

import trio

_CLOCK_REALTIME = 0
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_TIMER_ABSTIME = 1
_TFD_TIMER_CANCEL_ON_SET = 2


class WallClock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> bool:
        """Sleep until the wall time `when`; False when the clock jumped first."""
        ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)


class SystemWallClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> bool:
        fd = _libc.timerfd_create(_CLOCK_REALTIME, _TFD_CLOEXEC | _TFD_NONBLOCK)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        try:
            seconds = max(int(when), 0)
            deadline = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((when - seconds) * 1e9) if when > 0 else 0))
            if deadline.it_value.tv_sec == 0 and deadline.it_value.tv_nsec == 0:
                return True
            flags = _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET
            if _libc.timerfd_settime(fd, flags, ctypes.byref(deadline), None) < 0:
                raise OSError(ctypes.get_errno(), "timerfd_settime failed")
            while True:
                await trio.lowlevel.wait_readable(fd)
                try:
                    os.read(fd, 8)
                    return True
                except BlockingIOError:
                    continue
                except OSError as error:
                    if error.errno == errno.ECANCELED:
                        return False
                    raise
        finally:
            os.close(fd)


class TrioWallClock:
    """Wall time that moves with trio's clock, offset to a chosen start; `jump` sets it."""

    def __init__(self, start: float) -> None:
        self._offset = start - trio.current_time()
        self._jumped = trio.Event()

    def now(self) -> float:
        return self._offset + trio.current_time()

    def jump(self, seconds: float) -> None:
        self._offset += seconds
        self._jumped.set()
        self._jumped = trio.Event()

    async def sleep_until(self, when: float) -> bool:
        jumped = self._jumped
        with trio.move_on_after(max(when - self.now(), 0)):
            await jumped.wait()
            return False
        return True


def local_zone(name: str | None = None) -> tzinfo:
    """The named zone, else $TZ, else the system's /etc/localtime, else UTC."""
    name = name or os.environ.get("TZ", "").lstrip(":") or None
    if name:
        return ZoneInfo(name)
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        return timezone.utc
