"""A probe beside the daemon: a separate process that sleeps a millisecond at a time, and every
fifth wake-up does the same small piece of work, timed on the wall clock and on its own CPU
clock. A wake-up late by many milliseconds, or that work (about 0.1 ms) taking many, is the
machine holding it up: a core taken by borg, or the virtual machine's core taken by its host,
which the guest counts as CPU time of whatever it was running. So a slow step of the daemon
beside a slow probe is the machine's, not the daemon's work.

Run as ``python -m bench.stall_probe FILE``: until SIGTERM, each hold-up over
STALL_BOUND_SECONDS is a JSON line in FILE: when it ended, its wall and CPU seconds (the CPU
seconds of a late wake-up are 0)."""

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

WAKE_INTERVAL_SECONDS = 0.001
WORK_EVERY_WAKE_UPS = 5
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

        def record(seconds: float, cpu_seconds: float) -> None:
            if seconds > STALL_BOUND_SECONDS:
                out.write(json.dumps({"ended": time.time(), "seconds": seconds, "cpu_seconds": cpu_seconds}) + "\n")
                out.flush()

        wake_ups = 0
        while not stopping:
            asleep = time.perf_counter()
            time.sleep(WAKE_INTERVAL_SECONDS)
            record(time.perf_counter() - asleep - WAKE_INTERVAL_SECONDS, 0.0)
            wake_ups += 1
            if wake_ups % WORK_EVERY_WAKE_UPS == 0:
                started, cpu_started = time.perf_counter(), time.thread_time()
                fixed_work()
                record(time.perf_counter() - started, time.thread_time() - cpu_started)


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
