"""When the daemon mirrors by itself: about a second after each change of the repository,
again after a mirror gave way to other work, and after 1, 2, 4 ... minutes (capped at an hour)
while mirrors fail or a person cancels them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from backupctl.protocol import ErrorCode, JobKind, JobState, RpcError, Trigger
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
    """Bring the bucket up to date after each change of the repository; run a mirror that gave
    way to another job again after it; retry a failed or cancelled mirror after 1, 2, 4 ...
    minutes (capped at an hour) until one succeeds."""
    keeper = MirrorKeeper(parts, start)
    changes.on(Change.JOB_FINISHED, keeper.job_ended)
    task_status.started()
    await keeper.run()


class MirrorKeeper:
    def __init__(self, parts: MirrorParts, start: StartMirror) -> None:
        self._parts = parts
        self._jobs = parts.repository.jobs
        self._start = start
        self._wanted = False  # the repository changed, or a mirror gave way, since the last mirror began
        self._compare_whole = False
        self._failures = 0  # mirrors failed or cancelled by a person in a row
        self._retry_at: float | None = None  # on trio's clock
        self._nudge = trio.Event()
        self._measure_wanted = False

    def job_ended(self, job: Job) -> None:
        if job.kind != JobKind.MIRROR:
            self._measure_wanted = True  # a failed snapshot may have committed a checkpoint too
            self._nudge.set()
        if job.kind == JobKind.MIRROR:
            self._mirror_ended(job)
        elif job.state == JobState.SUCCEEDED and (job.kind in MIRRORED_AFTER or job.kind in COMPARED_WHOLE_AFTER):
            self._compare_whole = self._compare_whole or job.kind in COMPARED_WHOLE_AFTER
            self._want()

    def _mirror_ended(self, job: Job) -> None:
        """Any mirror, whoever started it: a success ends the back-off; a failure, or a person's
        cancel, sets the next retry; a mirror that gave way runs once that job has ended."""
        if job.state == JobState.SUCCEEDED:
            self._failures, self._retry_at = 0, None
        elif job.state == JobState.CANCELLED and job.gave_way_to is not None:
            self._want()
        elif (job.error or {}).get("code") == ErrorCode.MIRROR_TAKEN_OVER:
            self._retry_at = None  # another box writes there now: until the mirror is set up again
            log.info("mirror stopped: another box took the prefix over")
        elif job.state in (JobState.FAILED, JobState.CANCELLED):
            self._failures += 1
            delay = retry_delay(self._failures)
            self._retry_at = trio.current_time() + delay
            reason = (job.error or {}).get("code") if job.state == JobState.FAILED else "cancelled"
            log.info("mirror %s (%s); trying again in %.0f s", job.state, reason, delay)
        self._nudge.set()

    def _want(self) -> None:
        self._wanted = True
        self._nudge.set()

    def _taken_over(self) -> bool:
        error = self._parts.repository.keeper.mirror_state.error
        return error is not None and error.code == ErrorCode.MIRROR_TAKEN_OVER

    async def run(self) -> None:
        await measure(self._parts)
        while True:
            trigger = await self._due()
            await self._settle()
            self._wanted, self._retry_at = False, None
            await measure(self._parts)
            await trio.lowlevel.checkpoint()  # a cancel that came during the walk starts nothing
            if self._parts.mirroring.current is None or self._parts.repository.configured() is None \
                    or self._taken_over():
                continue
            compare_whole = self._compare_whole
            try:
                job = self._start(self._parts, trigger, compare_whole=compare_whole)
            except RpcError as error:
                log.info("no mirror now: %s", error.message)
                if error.code == ErrorCode.BUSY:
                    self._wanted = True  # a job started meanwhile: after that one
                continue
            await self._jobs.wait(job)
            if job.state == JobState.SUCCEEDED and compare_whole:
                self._compare_whole = False

    async def _due(self) -> Trigger:
        """Wait until the repository changed or a retry is due; the trigger of that mirror."""
        while True:
            if self._measure_wanted:
                self._measure_wanted = False
                await measure(self._parts)
            if self._wanted:
                return Trigger.SCHEDULE
            if self._retry_at is not None and trio.current_time() >= self._retry_at:
                return Trigger.RETRY
            self._nudge = trio.Event()
            with trio.move_on_at(self._retry_at if self._retry_at is not None else math.inf):
                await self._nudge.wait()

    async def _settle(self) -> None:
        """A second for the job after this one (a snapshot's prune), then until no job runs."""
        await trio.sleep(SETTLE_SECONDS)
        while (running := self._jobs.current) is not None:
            await self._jobs.wait(running)
            await trio.sleep(SETTLE_SECONDS)
