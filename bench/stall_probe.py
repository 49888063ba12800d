"""A probe beside the daemon: a separate process that wakes every few milliseconds to do the
same small piece of work, timed on the wall clock and on its own CPU clock. When that work,
normally well under a millisecond, takes many, the machine held it up (a core taken by borg,
or the virtual machine's core taken by its host, which the guest counts as its own CPU time):
so a slow step of the daemon beside a slow probe is the machine's, not the daemon's work.

Run as ``python -m bench.stall_probe FILE``: until SIGTERM, each piece of work over
STALL_BOUND_SECONDS is a JSON line in FILE: when it ended, its wall and CPU seconds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.samples import Window

WAKE_INTERVAL_SECONDS = 0.005
STALL_BOUND_SECONDS = 0.002
WORK_UNITS = 2000


@dataclass(frozen=True)
class Stall:
    ended: float
    seconds: float
    cpu_seconds: float


def fixed_work() -> int:
    return sum(index * index for index in range(WORK_UNITS))


def probe(path: Path) -> None:
    stopping = False

    def stop(signal_number: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    with open(path, "a", encoding="utf-8") as out:
        while not stopping:
            time.sleep(WAKE_INTERVAL_SECONDS)
            started, cpu_started = time.perf_counter(), time.thread_time()
            fixed_work()
            seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu_started
            if seconds > STALL_BOUND_SECONDS:
                out.write(json.dumps({"ended": time.time(), "seconds": seconds, "cpu_seconds": cpu_seconds}) + "\n")
                out.flush()


class StallProbe:
    """The probe as a child of the bench, started and stopped around the measured phases."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "bench.stall_probe", str(self.path)],
                                         stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def stalls(self) -> list[Stall]:
        if not self.path.exists():
            return []
        return [Stall(**json.loads(line)) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


def worst_stall_within(stalls: list[Stall], window: Window) -> Stall | None:
    inside = [stall for stall in stalls if window.start <= stall.ended <= window.end]
    return max(inside, key=lambda stall: stall.seconds, default=None)


if __name__ == "__main__":
    probe(Path(sys.argv[1]))
