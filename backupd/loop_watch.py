"""The longest the event loop went without coming back: each task step timed, the worst kept
with the task's name, and any step long enough to hold up other callers logged."""

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


class LoopWatch(trio.abc.Instrument):
    """A trio instrument: two clock reads and a comparison per step, nothing kept per step."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Installed from inside a step, the watch times that one from now.
        self._step_started = clock()
        self._worst_seconds = 0.0
        self._worst_task = UNNAMED_TASK

    @property
    def worst(self) -> WorstStep | None:
        """The longest step since the watch was installed; None before any step ran."""
        if not self._worst_seconds:
            return None
        return WorstStep(self._worst_seconds, self._worst_task)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_started = self._clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        seconds = self._clock() - self._step_started
        if seconds <= STEP_BOUND and seconds <= self._worst_seconds:
            return
        name = shown_task_name(task.name)
        if seconds > self._worst_seconds:
            self._worst_seconds, self._worst_task = seconds, name
        if seconds > STEP_BOUND:
            log.log(logging.INFO if seconds > STEP_FELT else logging.DEBUG,
                    "event loop step of %.1f ms in %s", seconds * 1000, name)


def shown_task_name(name: str) -> str:
    return name if _PLAIN_TASK_NAME.match(name) else UNNAMED_TASK
