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


def peak_resident_bytes(pid: int) -> int:
    """VmHWM of /proc/PID/status: the most resident memory since start, or since `forget_peak`."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"process {pid} reports no VmHWM")


def forget_peak(pid: int) -> None:
    """Start VmHWM again from the current resident memory (Linux 4.0 and later)."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def cpu_time(pid: int) -> CpuTime:
    """utime and stime of /proc/PID/stat, in clock ticks."""
    fields = _stat_fields(pid)
    return CpuTime(user_ticks=int(fields[11]), system_ticks=int(fields[12]))


def children_cpu_time(pid: int) -> CpuTime:
    """cutime and cstime of /proc/PID/stat: the CPU time of the children it has waited for (borg)."""
    fields = _stat_fields(pid)
    return CpuTime(user_ticks=int(fields[13]), system_ticks=int(fields[14]))


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        text = stat.read()
    # The command name in parentheses may hold spaces; the fields after it do not.
    return text[text.rindex(")") + 2:].split()
