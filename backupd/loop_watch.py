"""The longest the event loop went without coming back: each task step timed, the worst kept
with the task's name, and any step long enough to hold up other callers logged. A long step
also says how much of it the daemon's thread spent on the CPU: the rest it was waiting to be
scheduled (borg keeps the cores busy) or on the disk (a page fault), not doing its own work."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)

# No step on the event loop should take longer: a step over this is logged at debug level.
STEP_BOUND = 0.005
# A step this long is felt by every client waiting on the daemon: logged at info level.
STEP_FELT = 0.050
# Task names are trio's dotted function names; anything else (a repr that could hold an
# argument, a path) is not shown.
_PLAIN_TASK_NAME = re.compile(r"[A-Za-z_<][\w.<>]*\Z")
UNNAMED_TASK = "unnamed task"


@dataclass(frozen=True)
class WorstStep:
    seconds: float
    task: str
    # The thread's CPU time in that step: its own work, beside the wall time it held the loop.
    cpu_seconds: float


class LoopWatch(trio.abc.Instrument):
    """A trio instrument: three clock reads (the wall clock twice, the thread's CPU clock once) and a
    comparison per step, the CPU clock again for a step long enough to log or keep; nothing kept per step."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 thread_clock: Callable[[], float] = time.thread_time) -> None:
        self._clock = clock
        self._thread_clock = thread_clock
        # Installed from inside a step, the watch times that one from now.
        self._step_started = clock()
        self._step_cpu_started = thread_clock()
        self._worst_seconds = 0.0
        self._worst_cpu_seconds = 0.0
        self._worst_task = UNNAMED_TASK

    @property
    def worst(self) -> WorstStep | None:
        """The longest step since the watch was installed; None before any step ran."""
        if not self._worst_seconds:
            return None
        return WorstStep(self._worst_seconds, self._worst_task, self._worst_cpu_seconds)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_started = self._clock()
        self._step_cpu_started = self._thread_clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        seconds = self._clock() - self._step_started
        if seconds <= STEP_BOUND and seconds <= self._worst_seconds:
            return
        cpu_seconds = self._thread_clock() - self._step_cpu_started
        name = shown_task_name(task.name)
        if seconds > self._worst_seconds:
            self._worst_seconds, self._worst_cpu_seconds, self._worst_task = seconds, cpu_seconds, name
        if seconds > STEP_BOUND:
            log.log(logging.INFO if seconds > STEP_FELT else logging.DEBUG,
                    "event loop step of %.1f ms (%.1f ms on the CPU) in %s", seconds * 1000, cpu_seconds * 1000, name)


def shown_task_name(name: str) -> str:
    return name if _PLAIN_TASK_NAME.match(name) else UNNAMED_TASK
