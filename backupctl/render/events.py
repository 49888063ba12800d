"""Notifications as `backupctl watch` prints them, one line each."""

from __future__ import annotations

from backupctl.protocol import Notification
from backupctl.records import JobRecord, Overview
from backupctl.render import text as fmt
from backupctl.render.jobs import has_warnings, job_duration, job_kind
from backupctl.render.progress import progress_line
from backupctl.render.text import to_json


def describe_notification(notification: Notification, now: float, width: int = 100) -> str:
    params = notification.params
    method = notification.method
    if method == "status.changed":
        summary = describe_status_change(Overview.from_wire(params), now)
    elif method.startswith("job."):
        summary = describe_job_event(method, JobRecord.from_wire(params), width - 40)
    else:
        summary = to_json(params, indent=None)
    return f"{fmt.clock(now)}  {method:<15} {summary}"


def describe_job_event(method: str, job: JobRecord, width: int) -> str:
    name = f"{job_kind(job)} job {job.id}"
    if method == "job.started":
        return f"{name} started ({job.trigger})"
    if method == "job.progress":
        return f"{name}: {progress_line(job.progress, max(width, 40))}"
    if method == "job.finished":
        took = job_duration(job)
        if job.error:
            return f"{name} {job.state} after {took}: {job.error.code}: {job.error.message}"
        with_warnings = f", with warnings (`backupctl log {job.id}`)" if has_warnings(job) else ""
        return f"{name} {job.state} in {took}{with_warnings}"
    return f"{name} {job.state}"


def describe_status_change(overview: Overview, now: float) -> str:
    parts = [overview.state, fmt.plural(overview.snapshot_count or 0, "snapshot")]
    if overview.last_snapshot:
        parts.append(f"last {fmt.relative_time(overview.last_snapshot.time, now)}")
    if overview.problem:
        parts.append(f"problem {overview.problem.code}")
    return ", ".join(parts)
