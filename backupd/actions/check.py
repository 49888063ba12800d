"""Consistency check: `borg check` of the repository and its archives, at low priority."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from backupd.actions.maintenance import check_repository
from backupd.actions.parts import RepositoryParts
from backupd.borg.log_json import BorgEvent, ProgressPercent
from backupd.jobs import Job, ReportProgress
from backupd.progress import progress_with
from backupd.state import CheckRecord

log = logging.getLogger(__name__)

CHECK_FAILED = "check_failed"


def start_check(parts: RepositoryParts, trigger: str, requested_by: dict[str, Any] | None = None) -> Job:
    parts.require_config()
    return parts.jobs.start("check", trigger, partial(_check, parts), requested_by)


async def _check(parts: RepositoryParts, job: Job, report: ReportProgress) -> dict[str, Any]:
    config = parts.require_config()

    def on_event(event: BorgEvent) -> None:
        if isinstance(event, ProgressPercent) and not event.finished and event.total:
            report(progress_with(percent=round(100 * (event.current or 0) / event.total, 1), step=event.message))

    report(progress_with(percent=0.0, step="checking"))
    async with parts.keeper.lock:
        outcome = await check_repository(parts.borg, config, on_event)
    now = parts.now()
    problem = parts.keeper.repository.problem
    if not outcome.ok:
        summary = outcome.errors[-1] if outcome.errors else "borg check found errors"
        message = f"The consistency check found damage in the repository: {summary}"
        problem = parts.keeper.problem_from(CHECK_FAILED, message, "check")
        record = CheckRecord(time=now, ok=False, message=message)
        log.warning("%s", message)
    else:
        if problem is not None and problem.operation == "check":
            problem = None
        record = CheckRecord(time=now, ok=True, message="no problems found")
        log.info("the consistency check found no problems")
    await parts.keeper.update(last_check=record, problem=problem)
    return {"ok": outcome.ok, "errors": list(outcome.errors)}
