"""When the daemon mirrors by itself: about a second after each change of the repository,
and again after 1, 2, 4 ... minutes (capped at an hour) while mirrors fail."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from backupctl.protocol import JobState, RpcError
from backupd.actions.mirror import measure, start_mirror
from backupd.actions.parts import MirrorParts
from backupd.events import Change, Changes
from backupd.jobs import Job
from backupd.scheduler import retry_delay

log = logging.getLogger(__name__)

# Jobs after whose success the bucket is brought up to date; after a check it is compared whole.
MIRRORED_AFTER = frozenset({"snapshot", "prune", "configure", "mirror_setup"})
COMPARED_WHOLE_AFTER = frozenset({"check"})
# A snapshot's prune starts right after it: one mirror then covers both.
SETTLE_SECONDS = 1.0


StartMirror = Callable[..., Job]


async def keep_mirrored(parts: MirrorParts, changes: Changes, start: StartMirror = start_mirror, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Bring the bucket up to date after each change of the repository, retrying a failed
    mirror after 1, 2, 4 ... minutes (capped at an hour) until it succeeds."""
    jobs = parts.repository.jobs
    wanted = trio.Event()
    compare_whole = False

    def job_ended(_: Job) -> None:
        nonlocal compare_whole
        latest = jobs.recent(1)
        if not latest or latest[0].state != JobState.SUCCEEDED:
            return
        if latest[0].kind in MIRRORED_AFTER or latest[0].kind in COMPARED_WHOLE_AFTER:
            compare_whole = compare_whole or latest[0].kind in COMPARED_WHOLE_AFTER
            wanted.set()

    changes.on(Change.JOB_FINISHED, job_ended)
    task_status.started()
    await measure(parts)
    failures = 0
    while True:
        await wanted.wait()
        await trio.sleep(SETTLE_SECONDS)
        while (running := jobs.current) is not None:
            await jobs.wait(running)
            await trio.sleep(SETTLE_SECONDS)
        wanted = trio.Event()
        await measure(parts)
        await trio.lowlevel.checkpoint()  # a cancel that came during the walk starts nothing
        if parts.mirroring.current is None or parts.repository.configured() is None:
            continue
        try:
            job = start(parts, "schedule", compare_whole=compare_whole)
        except RpcError as error:
            log.info("no mirror after the change: %s", error.message)
            continue
        await jobs.wait(job)
        if job.state == JobState.SUCCEEDED:
            failures, compare_whole = 0, False
        elif job.state == JobState.FAILED:
            failures += 1
            delay = retry_delay(failures)
            log.info("mirror failed (%s); trying again in %.0f s", (job.error or {}).get("code"), delay)
            with trio.move_on_after(delay):
                await wanted.wait()
            wanted.set()
        elif jobs.current is not None:
            wanted.set()  # it gave way to a job a person asked for; it runs again after that one
