"""Notifications as `backupctl watch` prints them, one line each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backupctl.protocol import Notification
from backupctl.render import text as fmt
from backupctl.render.jobs import has_warnings, job_duration, job_kind
from backupctl.render.progress import progress_line
from backupctl.render.text import to_json


def describe_notification(notification: Notification, now: float, width: int = 100) -> str:
    params = notification.params
    method = notification.method
    if method == "status.changed":
        summary = describe_status_change(params, now)
    elif method.startswith("job."):
        summary = describe_job_event(method, params, width - 40)
    else:
        summary = to_json(params, indent=None)
    return f"{fmt.clock(now)}  {method:<15} {summary}"


def describe_job_event(method: str, job: Mapping[str, Any], width: int) -> str:
    name = f"{job_kind(job)} job {job.get('id')}"
    if method == "job.started":
        return f"{name} started ({job.get('trigger')})"
    if method == "job.progress":
        return f"{name}: {progress_line(job.get('progress'), max(width, 40))}"
    if method == "job.finished":
        took = job_duration(job)
        error = job.get("error")
        if error:
            return f"{name} {job.get('state')} after {took}: {error.get('code')}: {error.get('message')}"
        with_warnings = f", with warnings (`backupctl log {job.get('id')}`)" if has_warnings(job) else ""
        return f"{name} {job.get('state')} in {took}{with_warnings}"
    return f"{name} {job.get('state')}"


def describe_status_change(overview: Mapping[str, Any], now: float) -> str:
    parts = [str(overview.get("state")), fmt.plural(overview.get("snapshot_count") or 0, "snapshot")]
    last = overview.get("last_snapshot")
    if last:
        parts.append(f"last {fmt.relative_time(last.get('time'), now)}")
    problem = overview.get("problem")
    if problem:
        parts.append(f"problem {problem.get('code')}")
    return ", ".join(parts)
