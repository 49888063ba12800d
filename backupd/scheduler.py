"""When the next automatic snapshot runs: the schedule, catch-up, retries with back-off.

The scheduler sleeps until the next due wall time and does nothing in between. It plans
again whenever the configuration changes, the wall clock jumps, or a job ends.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from backupctl.protocol import ErrorCode, JobState, RpcError
from backupd.actions.check import start_check
from backupd.actions.parts import RepositoryParts
from backupd.actions.retention import start_prune
from backupd.actions.snapshot import start_snapshot
from backupd.jobs import Job
from backupd.schedule import next_run
from backupd.service import Service

log = logging.getLogger(__name__)

RETRY_FIRST_DELAY = 60.0
RETRY_MAX_DELAY = 3600.0
NOT_RETRIED = frozenset({ErrorCode.PASSPHRASE_WRONG, ErrorCode.REPOSITORY_NOT_FOUND})


@dataclass(frozen=True)
class Plan:
    when: float
    trigger: str
    kind: str = "snapshot"


@dataclass(frozen=True)
class Retry:
    when: float
    attempt: int
    failed_at: float


StartJob = Callable[[RepositoryParts, str], Job]
DEFAULT_STARTERS: dict[str, StartJob] = {"snapshot": start_snapshot, "prune": start_prune, "check": start_check}


def retry_delay(attempt: int) -> float:
    """1, 2, 4 ... minutes after the first, second, third ... failure, capped at an hour."""
    doublings = min(max(attempt - 1, 0), 32)  # past the cap long before; keeps the power finite after weeks of failures
    return float(min(RETRY_FIRST_DELAY * 2 ** doublings, RETRY_MAX_DELAY))


class Scheduler:
    def __init__(self, service: Service, starters: Mapping[str, StartJob] | None = None) -> None:
        self._service = service
        self._starters = {**DEFAULT_STARTERS, **(starters or {})}
        self._clock = service.clock
        # Each box waits its own share of the jitter, so boxes sharing a server spread out.
        self._jitter_share = random.random()
        self._changed = trio.Event()
        self._retry: Retry | None = None

    def reschedule(self) -> None:
        """The configuration changed: forget pending retries and plan again."""
        self._retry = None
        self._changed.set()

    def wake(self) -> None:
        """Something the plan depends on changed (a job ended): plan again."""
        self._changed.set()

    def plan(self, now: float) -> Plan | None:
        plans = [plan for plan in (self._snapshot_plan(now), self._check_plan()) if plan is not None]
        return min(plans, key=lambda plan: plan.when, default=None)

    def _check_plan(self) -> Plan | None:
        repository = self._service.keeper.repository
        last = repository.last_check.time if repository.last_check else repository.configured_at
        check_interval = self._service.settings.check_interval_days * 86400.0
        if self._service.config is None or not check_interval or last is None:
            return None
        return Plan(last + check_interval, "schedule", "check")

    def _snapshot_plan(self, now: float) -> Plan | None:
        schedule = self._service.schedule()
        if schedule is None:
            return None
        repository = self._service.keeper.repository
        anchors = [t for t in (repository.last_success, repository.last_attempt, repository.configured_at) if t]
        regular = next_run(schedule, max(anchors, default=now), self._service.zone)
        if regular is None:
            return None
        regular += self._jitter_share * self._service.settings.jitter
        retry = self._retry
        if retry is not None and (repository.last_success or 0) < retry.failed_at and retry.when < regular:
            return Plan(retry.when, "retry")
        self._retry = None
        return Plan(regular, "schedule")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = self._clock.now()
            plan = self.plan(now)
            snapshot_plan = self._snapshot_plan(now)
            self._service.next_run = snapshot_plan.when if snapshot_plan else None
            self._service.publish_status()
            wake_times = [t for t in (plan.when if plan else None, self._service.overview.overdue_at()) if t and t > now]
            if self._service.settings_error is not None:
                await self._changed.wait()
            elif plan is not None and plan.when <= now:
                await self._run(plan)
            elif wake_times:
                await self._sleep_until(min(wake_times))
            else:
                await self._changed.wait()
            if self._changed.is_set():
                self._changed = trio.Event()

    async def _apply_retention(self) -> None:
        if self._service.overview.retention_off_reason() is not None:
            return
        try:
            job = self._starters["prune"](self._service.parts, "schedule")
        except RpcError:
            return
        await self._service.jobs.wait(job)

    async def _sleep_until(self, when: float) -> None:
        async with trio.open_nursery() as nursery:

            async def sleep() -> None:
                if not await self._clock.sleep_until(when):
                    log.info("the wall clock jumped: planning again")
                nursery.cancel_scope.cancel()

            async def interrupt() -> None:
                await self._changed.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(sleep)
            nursery.start_soon(interrupt)

    async def _run(self, plan: Plan) -> None:
        service = self._service
        try:
            job = self._starters[plan.kind](service.parts, plan.trigger)
        except RpcError as error:
            if error.code == ErrorCode.BUSY and service.jobs.current is not None:
                await service.jobs.wait(service.jobs.current)
            return
        if plan.kind == "check":
            await service.jobs.wait(job)
            return
        await service.keeper.update(last_attempt=job.started)
        await service.jobs.wait(job)
        if job.state == JobState.SUCCEEDED:
            await self._apply_retention()
        if job.state == JobState.FAILED and job.error and job.error["code"] not in NOT_RETRIED:
            attempt = self._retry.attempt + 1 if self._retry else 1
            self._retry = Retry(self._clock.now() + retry_delay(attempt), attempt, job.finished or job.started)
            log.info("automatic snapshot failed (%s); retry %d in %.0f s", job.error["code"], attempt, retry_delay(attempt))
        else:
            self._retry = None
