"""snapshot, check, jobs, log and cancel; a job followed to its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from backupctl.client import Client, DaemonUnreachable
from backupctl.invocation import EXIT_ERROR, EXIT_OK, Invocation, exit_code_of
from backupctl.render.errors import ssh_lines
from backupctl.render.jobs import (
    DescribeSuccess,
    describe_check_result,
    describe_job_with_log,
    describe_jobs,
    describe_snapshot_result,
    warning_lines,
)
from backupctl.terminal import ProgressDisplay

# While a snapshot runs, backupd sends progress every second; after this long without
# a notification the job is looked up in `jobs` in case its end was missed.
JOB_POLL_INTERVAL = 5.0
JOBS_LOOKUP_LIMIT = 20
JOBS_SHOWN = 20
JOBS_PAGE_MAX = 200


def run_snapshot(invocation: Invocation) -> int:
    return run_job(invocation, "snapshot", describe_snapshot_result)


def run_check(invocation: Invocation) -> int:
    return run_job(invocation, "check", describe_check_result)


def run_job(
    invocation: Invocation, method: str, describe_success: DescribeSuccess, params: dict[str, Any] | None = None
) -> int:
    """Start a job with `method`; unless --no-wait, follow its progress until it ends."""
    client = invocation.client
    if invocation.args.no_wait:
        job = client.call(method, params)
        if invocation.as_json:
            invocation.emit_json(job)
        else:
            invocation.say(job["id"])
        return EXIT_OK
    # Subscribing first means no notification about the new job can be missed.
    client.call("subscribe")
    job = client.call(method, params)
    title = str(job.get("kind", method)).capitalize()
    display = ProgressDisplay(invocation.stderr, enabled=not invocation.as_json or invocation.stderr.isatty())
    if not invocation.as_json:
        invocation.warn(f"{title} job {job['id']} {'started' if job['state'] == 'running' else job['state']}.")
    try:
        finished = follow_job(client, job, display.show)
    except KeyboardInterrupt:
        display.clear()
        invocation.warn(
            f"\nStopped watching. The {job.get('kind', method)} goes on in backupd; "
            f"stop it with `backupctl cancel {job['id']}`."
        )
        raise
    display.clear()
    return report_finished_job(invocation, finished, describe_success)


ShowProgress = Callable[[Mapping[str, Any]], None]


def follow_job(client: Client, job: Mapping[str, Any], on_progress: ShowProgress) -> dict[str, Any]:
    """Wait for the job to end, showing its progress; return its final record."""
    if job["state"] != "running":
        return dict(job)
    job_id = job["id"]
    on_progress(job.get("progress"))
    client.set_timeout(JOB_POLL_INTERVAL)
    while True:
        try:
            for notification in client.events():
                if notification.params.get("id") != job_id:
                    continue
                if notification.method == "job.progress":
                    on_progress(notification.params.get("progress"))
                elif notification.method == "job.finished":
                    return notification.params
        except TimeoutError:
            record = find_job(client, job_id)
            if record is not None and record["state"] != "running":
                return record
            continue
        raise DaemonUnreachable(f"backupd closed the connection while job {job_id} ran")


def find_job(client: Client, job_id: str) -> dict[str, Any] | None:
    for record in client.paged("jobs", "jobs", {"limit": JOBS_LOOKUP_LIMIT}):
        if record.get("id") == job_id:
            return record
    return None


def report_finished_job(
    invocation: Invocation, job: Mapping[str, Any], describe_success: DescribeSuccess
) -> int:
    if invocation.as_json:
        invocation.emit_json(job)
    if not invocation.as_json:
        for line in warning_lines(job):
            invocation.warn(line)
    if job.get("state") != "succeeded":
        error = job.get("error") or {}
        code = error.get("code", job.get("state"))
        message = error.get("message", f"the {job.get('kind')} did not succeed")
        invocation.warn(f"error: {code}: {message}")
        for line in ssh_lines(error.get("data") or {}):
            invocation.warn(line)
        return exit_code_of(code)
    outcome = describe_success(job)
    if not invocation.as_json:
        invocation.say(outcome.text)
    return EXIT_OK if outcome.good else EXIT_ERROR


def run_jobs(invocation: Invocation) -> int:
    wanted = invocation.args.limit if invocation.args.limit is not None else JOBS_SHOWN
    records = list(islice(invocation.client.paged("jobs", "jobs", {"limit": min(wanted, JOBS_PAGE_MAX)}), wanted))
    if invocation.as_json:
        invocation.emit_json(records)
        return EXIT_OK
    invocation.say(describe_jobs(records, time.time()))
    return EXIT_OK


def run_log(invocation: Invocation) -> int:
    job = invocation.client.call("job", {"id": invocation.args.job_id})
    if invocation.as_json:
        invocation.emit_json(job)
    else:
        invocation.say(describe_job_with_log(job, time.time()))
    return EXIT_OK


def run_cancel(invocation: Invocation) -> int:
    job_id = invocation.args.job_id
    result = invocation.client.call("cancel", {"job": job_id})
    if invocation.as_json:
        invocation.emit_json(result)
    elif result.get("state", "running") != "running":
        invocation.say(f"Job {job_id} already finished ({result['state']}); nothing to cancel.")
    else:
        invocation.say(f"Cancelling job {job_id}.")
    return EXIT_OK
