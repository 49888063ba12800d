"""What the kernel says about a process: resident memory and CPU time."""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTime:
    user_ticks: int
    system_ticks: int

    @property
    def ticks(self) -> int:
        return self.user_ticks + self.system_ticks


def resident_bytes(pid: int) -> int:
    """VmRSS of /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                kilobytes = int(line.split()[1])
                return kilobytes * 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")


def cpu_time(pid: int) -> CpuTime:
    """utime and stime of /proc/PID/stat, in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        text = stat.read()
    # The command name in parentheses may hold spaces; the fields after it do not.
    fields = text[text.rindex(")") + 2:].split()
    return CpuTime(user_ticks=int(fields[11]), system_ticks=int(fields[12]))
