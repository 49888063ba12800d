"""The daemon's slow event-loop steps, read from its log: every step over 5 ms is a debug line
(`backupd.loop_watch`), stamped to the millisecond when the step ended."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.samples import Window

# As backupd logs outside the journal: "%(asctime)s %(levelname)s %(name)s: %(message)s".
_STEP_LINE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ backupd\.loop_watch: "
    r"event loop step of (?P<milliseconds>[\d.]+) ms in (?P<task>\S+)$", re.MULTILINE)
# The log's stamps are to the millisecond: a step that ended at the window's edge is in it.
STAMP_SLACK_SECONDS = 0.001


@dataclass(frozen=True)
class SlowStep:
    ended: float
    seconds: float
    task: str


def slow_steps(log_path: Path) -> list[SlowStep]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [SlowStep(ended=datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f").timestamp(),
                     seconds=float(match["milliseconds"]) / 1000, task=match["task"])
            for match in _STEP_LINE.finditer(text)]


def worst_within(steps: list[SlowStep], window: Window) -> SlowStep | None:
    inside = [step for step in steps
              if window.start - STAMP_SLACK_SECONDS <= step.ended <= window.end + STAMP_SLACK_SECONDS]
    return max(inside, key=lambda step: step.seconds, default=None)


def by_task(steps: list[SlowStep], window: Window) -> dict[str, tuple[int, float]]:
    """For each task with slow steps in the window: how many, and the longest."""
    tasks: dict[str, tuple[int, float]] = {}
    for step in steps:
        if window.start - STAMP_SLACK_SECONDS <= step.ended <= window.end + STAMP_SLACK_SECONDS:
            count, longest = tasks.get(step.task, (0, 0.0))
            tasks[step.task] = (count + 1, max(longest, step.seconds))
    return tasks
