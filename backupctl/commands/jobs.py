"""snapshot, check, jobs, log and cancel; a job followed to its end."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from backupctl.client import Client, DaemonUnreachable
from backupctl.invocation import EXIT_ERROR, EXIT_OK, Invocation, exit_code_of
from backupctl.protocol import JobState
from backupctl.records import CancelResult, JobRecord, JobWithLog, Progress
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
        started = client.call(method, params)
        if invocation.as_json:
            invocation.emit_json(started)
        else:
            invocation.say(JobRecord.from_wire(started).id)
        return EXIT_OK
    # Subscribing first means no notification about the new job can be missed.
    client.call("subscribe")
    job = JobRecord.from_wire(client.call(method, params))
    display = ProgressDisplay(invocation.stderr, enabled=not invocation.as_json or invocation.stderr.isatty())
    if not invocation.as_json:
        state = "started" if job.state == JobState.RUNNING else job.state
        invocation.warn(f"{str(job.kind).capitalize()} job {job.id} {state}.")
    try:
        finished = follow_job(client, job, display.show)
    except KeyboardInterrupt:
        display.clear()
        invocation.warn(
            f"\nStopped watching. The {job.kind} goes on in backupd; "
            f"stop it with `backupctl cancel {job.id}`."
        )
        raise
    display.clear()
    return report_finished_job(invocation, finished, describe_success)


ShowProgress = Callable[[Progress], None]


def follow_job(client: Client, job: JobRecord, on_progress: ShowProgress) -> JobRecord:
    """Wait for the job to end, showing its progress; return its final record."""
    if job.state != JobState.RUNNING:
        return job
    on_progress(job.progress)
    client.set_timeout(JOB_POLL_INTERVAL)
    while True:
        try:
            for notification in client.events():
                if notification.method not in ("job.progress", "job.finished"):
                    continue
                record = JobRecord.from_wire(notification.params)
                if record.id != job.id:
                    continue
                if notification.method == "job.progress":
                    on_progress(record.progress)
                else:
                    return record
        except TimeoutError:
            found = find_job(client, job.id)
            if found is not None and found.state != JobState.RUNNING:
                return found
            continue
        raise DaemonUnreachable(f"backupd closed the connection while job {job.id} ran")


def find_job(client: Client, job_id: str) -> JobRecord | None:
    for wire in client.paged("jobs", "jobs", {"limit": JOBS_LOOKUP_LIMIT}):
        record = JobRecord.from_wire(wire)
        if record.id == job_id:
            return record
    return None


def report_finished_job(invocation: Invocation, job: JobRecord, describe_success: DescribeSuccess) -> int:
    if invocation.as_json:
        invocation.emit_json(job.to_wire())
    if not invocation.as_json:
        for line in warning_lines(job):
            invocation.warn(line)
    if job.state != JobState.SUCCEEDED:
        code = job.error.code if job.error else job.state
        message = job.error.message if job.error else f"the {job.kind} did not succeed"
        invocation.warn(f"error: {code}: {message}")
        for line in ssh_lines(job.error.data if job.error else None):
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
    invocation.say(describe_jobs([JobRecord.from_wire(record) for record in records], time.time()))
    return EXIT_OK


def run_log(invocation: Invocation) -> int:
    job = invocation.client.call("job", {"id": invocation.args.job_id})
    if invocation.as_json:
        invocation.emit_json(job)
    else:
        invocation.say(describe_job_with_log(JobWithLog.from_wire(job), time.time()))
    return EXIT_OK


def run_cancel(invocation: Invocation) -> int:
    job_id = invocation.args.job_id
    result = invocation.client.call("cancel", {"job": job_id})
    if invocation.as_json:
        invocation.emit_json(result)
    elif (state := CancelResult.from_wire(result).state) != JobState.RUNNING:
        invocation.say(f"Job {job_id} already finished ({state}); nothing to cancel.")
    else:
        invocation.say(f"Cancelling job {job_id}.")
    return EXIT_OK
