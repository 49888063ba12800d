"""The daemon's slow event-loop steps, read from its log: every step over 5 ms is a debug line
(`backupd.loop_watch`), stamped to the millisecond when the step ended, with the step's CPU time
(the daemon's own work) beside its wall time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.samples import Window

# As backupd logs outside the journal: "%(asctime)s %(levelname)s %(name)s: %(message)s".
_STEP_LINE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ backupd\.loop_watch: "
    r"event loop step of (?P<milliseconds>[\d.]+) ms(?: \((?P<cpu_milliseconds>[\d.]+) ms on the CPU\))? "
    r"in (?P<task>[^\n]+)$", re.MULTILINE)
# The log's stamps are to the millisecond: a step that ended at the window's edge is in it.
STAMP_SLACK_SECONDS = 0.001


@dataclass(frozen=True)
class SlowStep:
    ended: float
    seconds: float
    task: str
    # None in the lines of a daemon that did not measure it.
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class TaskSteps:
    """One task's slow steps in a window: how many, the longest, and the most time one of them took on the CPU."""

    count: int
    longest: float
    most_cpu: float | None


def slow_steps(log_path: Path) -> list[SlowStep]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [SlowStep(ended=datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f").timestamp(),
                     seconds=float(match["milliseconds"]) / 1000, task=match["task"],
                     cpu_seconds=_seconds(match["cpu_milliseconds"]))
            for match in _STEP_LINE.finditer(text)]


def within(steps: list[SlowStep], window: Window) -> list[SlowStep]:
    return [step for step in steps
            if window.start - STAMP_SLACK_SECONDS <= step.ended <= window.end + STAMP_SLACK_SECONDS]


def worst_within(steps: list[SlowStep], window: Window) -> SlowStep | None:
    return max(within(steps, window), key=lambda step: step.seconds, default=None)


def worst_on_cpu_within(steps: list[SlowStep], window: Window) -> SlowStep | None:
    """The logged step that spent longest on the CPU: any step with over 5 ms of it is logged, being as long in wall time."""
    measured = [step for step in within(steps, window) if step.cpu_seconds is not None]
    return max(measured, key=lambda step: step.cpu_seconds or 0.0, default=None)


def by_task(steps: list[SlowStep], window: Window) -> dict[str, TaskSteps]:
    """For each task with slow steps in the window: how many, the longest, and the most on the CPU."""
    tasks: dict[str, TaskSteps] = {}
    for step in within(steps, window):
        seen = tasks.get(step.task, TaskSteps(0, 0.0, None))
        most_cpu = max((cpu for cpu in (seen.most_cpu, step.cpu_seconds) if cpu is not None), default=None)
        tasks[step.task] = TaskSteps(seen.count + 1, max(seen.longest, step.seconds), most_cpu)
    return tasks


def _seconds(milliseconds: str | None) -> float | None:
    return float(milliseconds) / 1000 if milliseconds is not None else None
