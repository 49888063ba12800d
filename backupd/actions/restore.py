"""Restore: put a snapshot, whole or in part, back at its original locations, safely.

borg extracts into staging folders beside the targets; the restore transaction then swaps
the staged content into place and keeps the old content aside until every target is in
place, so an interruption never leaves a target half old and half new.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from backupctl.paths import from_wire
from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.parts import RepositoryParts, SnapshotParts
from backupd.actions.repository import chosen_archive, refresh_if_changed
from backupd.borg import commands
from backupd.borg.archives import info_archive
from backupd.borg.errors import refused_path
from backupd.borg.log_json import BorgEvent, ListedItems, LogMessage
from backupd.config import BackupConfig
from backupd.errors import invalid_params, not_in_snapshot
from backupd.hooks import around_job
from backupd.jobs import Job, ReportProgress
from backupd.keeper import Keeper
from backupd.params import Param, PathName
from backupd.paths import is_within, outermost
from backupd.borg.grammar import check_exclude
from backupd.progress import progress_with
from backupd.restore.archive_roots import excludes_in
from backupd.restore.contents import SnapshotContents
from backupd.restore.not_created import missing_in
from backupd.restore.preview import dry_run
from backupd.restore.progress import RestoreProgress, report_written
from backupd.restore.space import bytes_by_target, on_one_file_system, room_for
from backupd.restore.errors import NotInSnapshot, RestoreError
from backupd.restore.journal import journal_path, unfinished_journals
from backupd.restore.transaction import RestoreTransaction
from backupd.state import ArchiveEntry

log = logging.getLogger(__name__)

RESTORE_PARAMS = (
    Param("snapshot", str),
    Param("paths", list, item_kind=PathName),
    Param("dry_run", bool),
    Param("remove_excluded", bool),
    Param("wait", bool),
)


@dataclass(frozen=True)
class RestoreRequest:
    archive: ArchiveEntry
    paths: tuple[str, ...]
    dry_run: bool
    remove_excluded: bool = False  # delete what the snapshot's exclude patterns match too


RESTORE_PARTIAL = "restore_partial"


def start_restore(parts: SnapshotParts, params: dict[str, Any], requested_by: dict[str, Any] | None = None) -> Job:
    parts.repository.require_config()
    request = RestoreRequest(
        archive=chosen_archive(parts.repository.keeper.repository.archives, params.get("snapshot")),
        paths=tuple(_restore_path(from_wire(path)) for path in params.get("paths", ())),
        dry_run=params.get("dry_run", False),
        remove_excluded=params.get("remove_excluded", False),
    )
    return parts.repository.jobs.start("restore", "manual", partial(_restore, parts, request), requested_by,
                              dry_run=request.dry_run)


def _restore_path(path: str) -> str:
    if not os.path.isabs(path) or os.path.normpath(path) != path or path == "/" or "\0" in path:
        raise invalid_params("paths", f"{path!r} must be an absolute, normalised path below /")
    return path


async def _restore(parts: SnapshotParts, request: RestoreRequest, job: Job, report: ReportProgress) -> dict[str, Any]:
    config = parts.repository.require_config()
    report(progress_with(step="reading the snapshot"))
    await parts.restore_cleaned_up.wait()
    async with parts.repository.keeper.lock:
        await refresh_if_changed(parts.repository)
        contents = await _snapshot_contents(parts, config, request.archive)
        targets = _targets(parts.repository, request.paths, list(contents.sources))
        if request.dry_run:
            log.info("dry run of restoring %s from snapshot %s", ", ".join(targets), request.archive.name)
            return await _dry_run(parts, config, request, targets, contents)
        log.info("restoring %s from snapshot %s", ", ".join(targets), request.archive.name)
        return await around_job(
            parts.repository.settings().hooks, "restore", job,
            partial(_extract_and_swap, parts, config, request, targets, contents, job, report),
        )


async def _snapshot_contents(parts: SnapshotParts, config: BackupConfig, archive: ArchiveEntry) -> SnapshotContents:
    """What the snapshot holds: remembered for the daemon's own snapshots, else read from its
    items (an archive made by hand may have named anything on its command line)."""
    if archive.sources and archive.exclude is not None:
        places = {source: source.lstrip("/") for source in archive.sources}
        return SnapshotContents(places, archive.files or 0, archive.original_size or 0, archive.exclude)
    info = await parts.repository.borg.run(commands.info_archive(config.repository, archive.name))
    details = info_archive(info.json)
    exclude = tuple(pattern for pattern in excludes_in(details.command_line)
                    if _valid_exclude(pattern))
    if archive.sources:
        places = {source: source.lstrip("/") for source in archive.sources}
        return SnapshotContents(places, archive.files or 0, archive.original_size or 0, exclude)
    places = (await parts.browser.contents_of(archive)).places
    return SnapshotContents(places, details.files, details.original_size, exclude)


def _valid_exclude(pattern: str) -> bool:
    try:
        check_exclude(pattern)
    except ValueError:
        log.warning("the snapshot's exclude pattern %r is not understood; what it matches is not kept", pattern)
        return False
    return True


def _targets(repository: RepositoryParts, paths: tuple[str, ...], sources: list[str]) -> tuple[str, ...]:
    if not sources:
        raise RpcError(ErrorCode.NOT_FOUND, "The snapshot does not say which paths it holds; restore it with borg by hand")
    # A snapshot whose sources overlap (one inside another, or one twice) is restored by its
    # outermost ones, which hold the rest.
    targets = paths or outermost(sources)
    for target in targets:
        if not any(is_within(target, source) for source in sources):
            raise invalid_params("paths", f"{target} is not in the snapshot, which holds {', '.join(sources)}")
        for protected in (repository.settings().state_dir, repository.borg.base_dir()):
            if Path(protected).is_relative_to(target):
                raise invalid_params("paths", f"{target} holds the daemon's own files ({protected}); restore a path inside it")
    return targets


async def _dry_run(parts: SnapshotParts, config: BackupConfig, request: RestoreRequest,
                   targets: tuple[str, ...], contents: SnapshotContents) -> dict[str, Any]:
    excluded = (lambda place: False) if request.remove_excluded else contents.excluded
    async with parts.browser.opened(request.archive) as (index, _):
        answer = await trio.to_thread.run_sync(dry_run, index, targets, contents, excluded)
    if answer.changes.missing:
        raise not_in_snapshot(request.archive.name, answer.changes.missing, list(contents.sources))
    return {"dry_run": True, "snapshot": request.archive.name, "targets": list(targets), **answer.to_record()}


async def _refuse_without_room(parts: SnapshotParts, config: BackupConfig, request: RestoreRequest,
                               targets: tuple[str, ...], contents: SnapshotContents) -> None:
    """Fail before anything is written when a file system cannot hold the staged copy: the
    snapshot's size for a whole restore onto one file system, else what borg lists."""
    if not request.paths and await trio.to_thread.run_sync(on_one_file_system, targets):
        needed = {targets[0]: contents.original_size}
    else:
        async with parts.browser.opened(request.archive) as (index, _):
            needed = await trio.to_thread.run_sync(bytes_by_target, index, targets, contents)
    short = [room for room in await trio.to_thread.run_sync(room_for, needed) if not room.fits]
    if short:
        room = short[0]
        raise RpcError(
            ErrorCode.DISK_FULL,
            f"Not enough room on {room.mount_point}: the restore writes {room.needed} bytes there "
            f"(a whole second copy, before the old one is deleted) and {room.free} are free; nothing was restored",
            {"mount_point": room.mount_point, "needed": room.needed, "free": room.free},
        )


async def _extract_and_swap(parts: SnapshotParts, config: BackupConfig, request: RestoreRequest,
                            targets: tuple[str, ...], contents: SnapshotContents, job: Job,
                            report: ReportProgress) -> dict[str, Any]:
    # The snapshot's totals size a whole restore; a part of it has no total without an extra pass.
    whole = not request.paths
    progress = RestoreProgress(total_size=contents.original_size if whole else None,
                               total_files=contents.files if whole else None, place_of=contents.place_of)
    await _refuse_without_room(parts, config, request, targets, contents)
    state_dir = parts.repository.settings().state_dir
    try:
        transaction = await trio.to_thread.run_sync(partial(
            RestoreTransaction.prepare, journal_path(state_dir, job.id), job.id, targets,
            unfinished=unfinished_journals(state_dir),
            archive_paths={target: contents.archive_path(target) for target in targets},
            keep_excluded=() if request.remove_excluded else contents.exclude,
        ))
    except RestoreError as error:
        raise RpcError(ErrorCode.INVALID_PARAMS, str(error), {"param": "paths"}) from None
    not_restored: list[str] = []
    try:
        for group in transaction.extract_groups():
            paths = list(group.archive_paths)
            refused: list[str] = []

            def on_event(event: BorgEvent) -> None:
                if isinstance(event, ListedItems):
                    progress.items_extracted(event)
                elif isinstance(event, LogMessage) and (path := refused_path(event)) is not None:
                    refused.append(path)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(report_written, progress, report)
                with transaction.opened_staging_folder(group) as staging_fd:
                    progress.begin_group(staging_fd)
                    await parts.repository.borg.run(
                        commands.extract(config.repository, request.archive.name, paths),
                        on_event=on_event, cwd=f"/proc/self/fd/{staging_fd}")
                    progress.group_done()
                    missing = await trio.to_thread.run_sync(missing_in, staging_fd, refused)
                    not_restored += [contents.place_of(path.lstrip("/")) for path in missing]
                nursery.cancel_scope.cancel()
        report(progress.current(step="swapping"))
        await trio.to_thread.run_sync(transaction.swap_into_place)
    except BaseException as failure:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(transaction.abort)
        if isinstance(failure, NotInSnapshot):
            raise not_in_snapshot(request.archive.name, failure.missing, list(contents.sources)) from None
        if isinstance(failure, RestoreError):
            raise RpcError(ErrorCode.RESTORE_FAILED, f"The restore failed: {failure}") from None
        raise
    _clean_up_after_the_job(parts, transaction)
    report(progress.current(finished=True, step="done"))
    files = contents.files if not request.paths else progress.files_seen
    log.info("restored %d files, %d bytes", files, progress.done_size)
    await _report_not_restored(parts.repository.keeper, not_restored)
    result = {"snapshot": request.archive.name, "targets": list(targets), "files": files, "bytes": progress.done_size,
              "not_restored": len(not_restored)}
    return dict(result, not_restored_paths=not_restored) if not_restored else result


async def _report_not_restored(keeper: Keeper, not_restored: list[str]) -> None:
    """Items borg could not create (device nodes without CAP_MKNOD) are the overview's problem
    until a restore creates all it holds."""
    current = keeper.repository.problem
    if not_restored:
        message = (f"The last restore could not create {len(not_restored)} item(s), such as device nodes "
                   f"(the service may not make them): {', '.join(not_restored[:3])}")
        log.warning("%s", message)
        await keeper.update(problem=keeper.problem_from(RESTORE_PARTIAL, message, "restore"))
    elif current is not None and current.code == RESTORE_PARTIAL:
        await keeper.update(problem=None)


def _clean_up_after_the_job(parts: SnapshotParts, transaction: RestoreTransaction) -> None:
    """Deleting the previous content can take a while; the restore is done without waiting
    for it, and the next restore waits for it instead."""
    cleaned_up = trio.Event()
    parts.restore_cleaned_up = cleaned_up

    async def clean_up() -> None:
        try:
            await trio.to_thread.run_sync(transaction.clean_up)
        except RestoreError as error:
            log.error("cleaning up after a restore failed: %s", error)
        finally:
            cleaned_up.set()

    parts.repository.jobs.start_after_job(clean_up)
