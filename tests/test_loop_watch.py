"""The event loop's worst step: kept with its task's name and its CPU time, logged when long (the metrics file
shows it: test_metrics)."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from backupd.loop_watch import STEP_BOUND, STEP_FELT, UNNAMED_TASK, LoopWatch

HELD = STEP_FELT + 0.02
CLOCK_READS_SLACK = 0.001


async def hold_the_loop() -> None:
    await trio.sleep(0)
    time.sleep(HELD)


async def spin_the_loop() -> None:
    await trio.sleep(0)
    started = time.thread_time()
    while time.thread_time() - started < HELD:
        pass


async def short_steps() -> None:
    for _ in range(100):
        await trio.sleep(0)


def test_the_longest_step_is_kept_with_its_task_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(short_steps)
            nursery.start_soon(hold_the_loop)

    with caplog.at_level(logging.INFO, logger="backupd.loop_watch"):
        trio.run(main, instruments=[watch])
    worst = watch.worst
    assert worst is not None and worst.seconds >= HELD
    assert worst.task == f"{hold_the_loop.__module__}.hold_the_loop"
    assert [record.levelno for record in caplog.records] == [logging.INFO]
    assert worst.task in caplog.records[0].getMessage()


def test_a_step_that_waits_is_long_in_wall_time_and_short_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch()
    with caplog.at_level(logging.INFO, logger="backupd.loop_watch"):
        trio.run(hold_the_loop, instruments=[watch])
    worst = watch.worst
    assert worst is not None and worst.seconds >= HELD
    assert worst.cpu_seconds < STEP_BOUND
    [record] = caplog.records
    assert f"{worst.seconds * 1000:.1f} ms ({worst.cpu_seconds * 1000:.1f} ms on the CPU) in {worst.task}" \
        in record.getMessage()


def test_a_step_that_spins_is_long_in_wall_time_and_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch()
    with caplog.at_level(logging.INFO, logger="backupd.loop_watch"):
        trio.run(spin_the_loop, instruments=[watch])
    worst = watch.worst
    assert worst is not None and worst.task == f"{spin_the_loop.__module__}.spin_the_loop"
    # The thread clock is read just after the wall clock, at the step's start and end.
    assert HELD <= worst.cpu_seconds < worst.seconds + CLOCK_READS_SLACK
    [record] = caplog.records
    assert f"({worst.cpu_seconds * 1000:.1f} ms on the CPU)" in record.getMessage()


def test_a_task_name_that_is_not_a_function_name_is_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_the_loop, name="copy /home/alice/secret plans")

    with caplog.at_level(logging.DEBUG, logger="backupd.loop_watch"):
        trio.run(main, instruments=[watch])
    assert watch.worst is not None and watch.worst.task == UNNAMED_TASK
    assert "alice" not in caplog.text and UNNAMED_TASK in caplog.text
