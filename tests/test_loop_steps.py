"""The bench reads the loop watch's log lines: each slow step's wall time, its CPU time and its task, per window."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from backupd.loop_watch import LoopWatch
from bench.loop_steps import by_task, slow_steps, worst_on_cpu_within, worst_within
from bench.samples import Window

WAITED = 0.030
SPUN = 0.015
# As the daemon logs outside the journal (backupd.daemon.setup_logging).
DAEMON_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def wait_on_the_disk() -> None:
    await trio.sleep(0)
    time.sleep(WAITED)


async def spin() -> None:
    await trio.sleep(0)
    started = time.thread_time()
    while time.thread_time() - started < SPUN:
        pass


async def steps() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_on_the_disk)
        nursery.start_soon(spin)
        nursery.start_soon(wait_on_the_disk, name="copy /home/alice/plans")


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "backupd.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(DAEMON_LOG_FORMAT))
    logger = logging.getLogger("backupd.loop_watch")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield path
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def test_slow_steps_are_read_with_their_cpu_time_and_task(daemon_log: Path) -> None:
    started = time.time()
    trio.run(steps, instruments=[LoopWatch()])
    # A daemon that did not measure the CPU time wrote the older form.
    with daemon_log.open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')},000 DEBUG backupd.loop_watch: "
                  f"event loop step of 7.5 ms in backupd.server.Connection._answer\n")
    window = Window(started - 1, time.time() + 1)

    found = slow_steps(daemon_log)
    tasks = by_task(found, window)
    waiter, spinner = f"{__name__}.wait_on_the_disk", f"{__name__}.spin"
    assert {task: steps.count for task, steps in tasks.items()} == {
        waiter: 1, spinner: 1, "unnamed task": 1, "backupd.server.Connection._answer": 1}

    worst = worst_within(found, window)
    assert worst is not None and worst.task in (waiter, "unnamed task") and worst.seconds >= WAITED
    assert worst.cpu_seconds is not None and worst.cpu_seconds < SPUN
    on_cpu = worst_on_cpu_within(found, window)
    assert on_cpu is not None and on_cpu.task == spinner
    assert on_cpu.cpu_seconds is not None and on_cpu.cpu_seconds >= SPUN
    old_form = tasks["backupd.server.Connection._answer"]
    assert old_form.longest == pytest.approx(0.0075) and old_form.most_cpu is None

    assert worst_within(found, Window(started - 60, started - 30)) is None
