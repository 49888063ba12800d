"""The machine a run measured on, and when: the line printed above the figures."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version

GIB = 1024**3


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int
    cpu_model: str
    kernel: str
    python_version: str
    borg_version: str
    load_average_at_start: tuple[float, float, float]
    measured_at: str

    def describe(self) -> str:
        one, five, fifteen = self.load_average_at_start
        return (f"{self.cores} cores ({self.cpu_model}), {self.memory_bytes / GIB:.1f} GiB memory, "
                f"Linux {self.kernel}, Python {self.python_version}, borg {self.borg_version}; "
                f"load average {one:.2f} {five:.2f} {fifteen:.2f} at start; {self.measured_at}")


def describe_machine() -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        memory_bytes=_memory_bytes(),
        cpu_model=_cpu_model(),
        kernel=platform.release(),
        python_version=platform.python_version(),
        borg_version=version("borgbackup"),
        load_average_at_start=os.getloadavg(),
        measured_at=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )


def _memory_bytes() -> int:
    """MemTotal of /proc/meminfo."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown CPU"
