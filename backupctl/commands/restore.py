"""restore: the dry run shown, confirmed, then the restore followed to its end."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from backupctl.client import Client
from backupctl.commands.jobs import report_finished_job, run_job
from backupctl.invocation import CALL_TIMEOUT, EXIT_ERROR, Invocation
from backupctl.protocol import JobState
from backupctl.records import JobRecord, RestorePlan
from backupctl.snapshot_records import SnapshotListed
from backupctl.render.jobs import JobOutcome, describe_restore_result
from backupctl.render.restore import describe_restore_plan
from backupctl.render.text import path_list
from backupctl.terminal import confirmed


def run_restore(invocation: Invocation) -> int:
    """Show what the restore would change (a dry run), then, once confirmed, restore."""
    client = invocation.client
    params = restore_params(invocation.args)
    dry_run = JobRecord.from_wire(dry_run_restore(client, params))
    describe_plan = partial(restore_plan_outcome, client)
    if invocation.args.dry_run or dry_run.state != JobState.SUCCEEDED:
        return report_finished_job(invocation, dry_run, describe_plan)
    show = invocation.warn if invocation.as_json or invocation.args.no_wait else invocation.say
    show(describe_plan(dry_run).text)
    plan = RestorePlan.from_wire(dry_run.result)
    question = f"This overwrites {path_list(plan.targets or [], ', ')} with snapshot {plan.snapshot}."
    if not confirmed(invocation, question, "restore"):
        invocation.warn("Nothing was restored.")
        return EXIT_ERROR
    # By name: a snapshot taken since the dry run must not become "the newest" in its place.
    params["snapshot"] = plan.snapshot
    return run_job(invocation, "restore", describe_restore_result, params)


def restore_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.snapshot is not None:
        params["snapshot"] = args.snapshot
    if args.paths:
        params["paths"] = [os.path.abspath(path) for path in args.paths]
    if args.remove_excluded:
        params["remove_excluded"] = True
    return params


def dry_run_restore(client: Client, params: Mapping[str, Any]) -> Any:
    """The finished dry-run job, whose result says what the restore would write, replace and remove."""
    # The answer comes once borg has listed the snapshot, which may take longer than CALL_TIMEOUT.
    client.set_timeout(None)
    try:
        return client.call("restore", {**params, "dry_run": True, "wait": True})
    finally:
        client.set_timeout(CALL_TIMEOUT)


def restore_plan_outcome(client: Client, job: JobRecord) -> JobOutcome:
    plan = RestorePlan.from_wire(job.result)
    taken = snapshot_time(client, plan.snapshot)
    return JobOutcome(describe_restore_plan(plan, taken, time.time()))


def snapshot_time(client: Client, name: str | None) -> float | None:
    for entry in client.paged("snapshots", "snapshots"):
        snapshot = SnapshotListed.from_wire(entry)
        if snapshot.name == name:
            return snapshot.time
    return None
