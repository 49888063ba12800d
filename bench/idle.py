"""The daemon at rest: resident memory, and the CPU time it spends doing nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.procfs import CLOCK_TICKS_PER_SECOND, cpu_time, resident_bytes

SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class IdleFigures:
    resident_bytes: int
    cpu_ticks: int
    seconds: float
    ticks_per_second: int = CLOCK_TICKS_PER_SECOND


def measure_idle(pid: int, seconds: float) -> IdleFigures:
    time.sleep(SETTLE_SECONDS)
    resident = resident_bytes(pid)
    before = cpu_time(pid)
    time.sleep(seconds)
    after = cpu_time(pid)
    return IdleFigures(resident_bytes=resident, cpu_ticks=after.ticks - before.ticks, seconds=seconds)
