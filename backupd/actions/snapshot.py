"""Snapshot: one `borg create` of the configured sources, with progress and an updated overview."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import asdict, replace
from functools import partial
from typing import Any, TypeVar

import trio

from backupctl.protocol import RpcError
from backupd.actions.parts import RepositoryParts
from backupd.actions.repository import archive_entry, refresh_if_changed, summary_from_archive
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from backupd.borg.archives import created_archive, stored_size
from backupd.borg.errors import is_item_warning
from backupd.borg.log_json import ArchiveProgress, BorgEvent, LogMessage
from backupd.errors import no_sources
from backupd.hooks import around_job
from backupd.jobs import Job, ReportProgress
from backupd.progress import SnapshotProgress
from backupd.state import Problem

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
Result = TypeVar("Result")
MAX_WARNINGS = 100
SHOWN_IN_PROBLEM = 3
SNAPSHOT_INCOMPLETE = "snapshot_incomplete"


def start_snapshot(parts: RepositoryParts, trigger: str, requested_by: dict[str, Any] | None = None) -> Job:
    """Start a snapshot, or return the one already running."""
    if not parts.require_config().sources:
        raise no_sources()
    running = parts.jobs.current
    if running is not None and running.kind == "snapshot":
        return running
    return parts.jobs.start("snapshot", trigger, partial(_take_snapshot, parts), requested_by)


async def _take_snapshot(parts: RepositoryParts, job: Job, report: ReportProgress) -> dict[str, Any]:
    try:
        return await around_job(parts.settings().hooks, "snapshot", job, partial(_create_archive, parts, report))
    except RpcError as error:
        await parts.keeper.update(problem=parts.keeper.problem_from(error.code, error.message, "snapshot"))
        raise


async def _create_archive(parts: RepositoryParts, report: ReportProgress) -> dict[str, Any]:
    config = parts.require_config()
    previous = parts.keeper.repository.last_snapshot
    own = OwnArchives.of_host(parts.settings().hostname)
    name = own.name_at(parts.now())
    if previous is not None and previous.name == name:
        await trio.sleep(1)
        name = own.name_at(parts.now())
    estimate = SnapshotProgress(previous.original_size if previous else None)
    warnings: list[str] = []
    warning_count = 0

    missed: list[str] = []

    def on_event(event: BorgEvent) -> None:
        nonlocal warning_count
        if isinstance(event, ArchiveProgress) and not event.finished:
            report(estimate.update(event))
        elif isinstance(event, LogMessage) and event.at_least_warning:
            warning_count += 1
            if len(warnings) < MAX_WARNINGS:
                warnings.append(event.message)
            if is_item_warning(event):
                missed.append(event.message)

    report(estimate.current())
    log.info("taking snapshot %s of %s", name, ", ".join(config.sources))
    own_files = [f"pp:{parts.settings().state_dir}", f"pp:{parts.borg.base_dir()}"]
    command = commands.create(
        config.repository, name, config.sources, (*config.exclude, *own_files), config.compression,
        upload_limit=parts.settings().upload_limit if config.upload_limit is None else config.upload_limit,
    )
    checkpoints_before = parts.keeper.repository.checkpoints_left
    # An interrupted `borg create` leaves a checkpoint; it is known until this one succeeds.
    parts.keeper.repository = replace(parts.keeper.repository, checkpoints_left=True)
    async with parts.keeper.lock:
        await refresh_if_changed(parts)
        result = await _with_heartbeat(parts.borg.run(command, on_event=on_event), estimate, report)
        checkpoints_left = checkpoints_before and not await _deleted_own_checkpoints(parts, own)
    archive = created_archive(result.json)
    summary = summary_from_archive(archive)
    report(estimate.finished(summary))
    log.info("snapshot %s taken: files %d, bytes read %d, bytes new %d", summary.name, summary.files,
             summary.original_size, summary.deduplicated_size)
    if warning_count:
        log.warning("borg reported %d %s (exit code %d): what it could not read is not in the snapshot",
                    warning_count, "warning" if warning_count == 1 else "warnings", result.exit_code)
    await parts.keeper.add_archive(
        replace(archive_entry(archive), sources=config.sources, exclude=config.exclude,
                files=summary.files, original_size=summary.original_size),
        last_snapshot=summary,
        total_size=stored_size(result.json),
        file_count=summary.files,
        problem=_problem_after_success(parts, missed),
        checkpoints_left=checkpoints_left,
    )
    return {"snapshot": asdict(summary), "warnings": warnings, "warning_count": warning_count}


async def _deleted_own_checkpoints(parts: RepositoryParts, own: OwnArchives) -> bool:
    """Delete the checkpoints that interrupted snapshots of this box left, now that a whole
    snapshot holds what they held; whether that worked."""
    config = parts.require_config()
    try:
        await parts.borg.run(commands.delete_archives(config.repository, own.checkpoint_glob()))
    except RpcError as error:
        log.warning("cannot delete the checkpoints of interrupted snapshots: %s", error.message)
        return False
    log.info("deleted the checkpoints of interrupted snapshots")
    return True


async def _with_heartbeat(work: Awaitable[Result], estimate: SnapshotProgress, report: ReportProgress) -> Result:
    """Await work while progress ticks; the work's own exception comes out as itself."""
    outcome: list[Result] = []
    failure: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_heartbeat, estimate, report)
        try:
            outcome.append(await work)
        except Exception as error:
            failure.append(error)
        finally:
            nursery.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return outcome[0]


async def _heartbeat(estimate: SnapshotProgress, report: ReportProgress) -> None:
    """Borg is silent while it opens the cache or commits: progress still ticks every second."""
    while True:
        await trio.sleep(HEARTBEAT_INTERVAL)
        report(estimate.current())


def _problem_after_success(parts: RepositoryParts, missed: list[str]) -> Problem | None:
    """A snapshot that succeeds ends every problem but damage found by a check or a restore
    that could not be undone: those need a person. One that missed files (borg's warnings
    about items: unreadable, vanished, changed while read) is a problem of its own until a
    snapshot completes cleanly."""
    problem = parts.keeper.repository.problem
    if problem is not None and problem.operation in ("check", "restore"):
        return problem
    if missed:
        shown = "; ".join(missed[:SHOWN_IN_PROBLEM])
        more = f" and {len(missed) - SHOWN_IN_PROBLEM} more" if len(missed) > SHOWN_IN_PROBLEM else ""
        message = (f"The last snapshot is incomplete: borg could not read {len(missed)} "
                   f"{'item' if len(missed) == 1 else 'items'} ({shown}{more})")
        return parts.keeper.problem_from(SNAPSHOT_INCOMPLETE, message, "snapshot")
    return None
