"""The off-site mirror's policy: setting it up, and each mirror job: in what order the
repository is copied, and the comparison with the bucket afterwards."""

from __future__ import annotations

import os
import re
from functools import partial
from typing import Any, cast

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.bucket import (
    MirrorProgress,
    check_bucket,
    claim_prefix,
    local_repository_id,
    log_failure,
    require_local,
    require_mirror,
    run,
)
from backupd.actions.parts import MirrorParts
from backupd.actions.repository import refresh_if_changed
from backupd.borg.transactions import repository_marker
from backupd.jobs import Job, ReportProgress
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig, mirror_from_params
from backupd.mirror.errors import RcloneFailed, mirror_error
from backupd.mirror.state import MirrorState, measure_local_repository
from backupd.progress import progress_with
from backupd.ssh import remote_location
from backupd.state import Problem

# Files written within this much before the last mirror began are compared again.
MTIME_MARGIN_SECONDS = 2.0
# Past this many changed files the whole repository is compared (argv stays short).
MOST_FILES_COMPARED_BY_NAME = 200
_DIFFERENCES = re.compile(r"\b(\d+) differences found")


async def configure_mirror(parts: MirrorParts, params: dict[str, Any],
                           requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    folder = require_local(parts.repository.require_config())
    mirror = mirror_from_params(params, parts.box_name())
    work = partial(_set_up, parts, mirror, folder, params.get("take_over", False))
    job = parts.repository.jobs.start("mirror_setup", "manual", work, requested_by)
    await parts.repository.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return cast(dict[str, Any], job.result)


async def _set_up(parts: MirrorParts, mirror: MirrorConfig, folder: str, take_over: bool,
                  job: Job, report: ReportProgress) -> dict[str, Any]:
    report(progress_with(step="checking the bucket", location=mirror.location()))
    remote_id = await check_bucket(parts, mirror)
    local_id = await trio.to_thread.run_sync(local_repository_id, folder)
    taken_over = await claim_prefix(parts, mirror, remote_id, local_id, take_over)
    await adopt(parts, mirror)
    return {"location": mirror.location(), "taken_over": taken_over}


async def adopt(parts: MirrorParts, mirror: MirrorConfig) -> None:
    """Save the mirror; its record starts afresh when it is another bucket or prefix."""
    previous = parts.mirroring.current
    await parts.mirroring.save(mirror)
    if previous is None or previous.location() != mirror.location():
        await parts.repository.keeper.update_mirror_state(**vars(MirrorState()))


async def turn_off(parts: MirrorParts, requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop mirroring and forget the keys; the bucket is left as it is."""
    async def forget(job: Job, report: ReportProgress) -> dict[str, Any]:
        mirror = parts.mirroring.current
        location = mirror.location() if mirror else None
        await parts.mirroring.save(None)
        return {"location": location}

    job = parts.repository.jobs.start("mirror_off", "manual", forget, requested_by)
    await parts.repository.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return cast(dict[str, Any], job.result)


def start_mirror(parts: MirrorParts, trigger: str, requested_by: dict[str, Any] | None = None,
                 compare_whole: bool = False) -> Job:
    """Start bringing the bucket up to date, or return the mirror already running."""
    require_local(parts.repository.require_config())
    require_mirror(parts)
    running = parts.repository.jobs.current
    if running is not None and running.kind == "mirror":
        return running
    return parts.repository.jobs.start("mirror", trigger, partial(_mirror, parts, compare_whole), requested_by)


UPLOAD_STEPS = (
    ("uploading new segments", rclone.upload_new_segments),
    ("uploading the index", rclone.upload_metadata),
    ("removing deleted segments", rclone.delete_old_segments),
)


async def _mirror(parts: MirrorParts, compare_whole: bool, job: Job, report: ReportProgress) -> dict[str, Any]:
    repository = parts.repository
    config = repository.require_config()
    mirror = require_mirror(parts)
    folder = require_local(config)
    progress = MirrorProgress(report)
    started = repository.now()
    previous = repository.keeper.mirror_state
    try:
        async with repository.keeper.lock:
            await refresh_if_changed(repository)
            before = await trio.to_thread.run_sync(repository_marker, folder)
            archives = tuple(archive.name for archive in repository.keeper.repository.archives)
            since = previous.last_success_started if not compare_whole else None
            changed = await trio.to_thread.run_sync(changed_files, folder, since)
            for name, build in UPLOAD_STEPS:
                result = await run(parts, mirror, build(folder, mirror.remote), on_stats=progress.step(name))
                progress.step_done(result.stats)
            progress.step("comparing with the bucket")
            compared = await _compare(parts, mirror, folder, changed)
            if await trio.to_thread.run_sync(repository_marker, folder) != before:
                raise RpcError(ErrorCode.MIRROR_FAILED, "The repository changed while it was copied (a borg "
                               "process outside the daemon wrote to it); the next mirror copies it again")
    except RpcError as error:
        since = previous.error.since if previous.error and previous.error.code == error.code else repository.now()
        await repository.keeper.update_mirror_state(error=Problem(error.code, error.message, since, "mirror"))
        raise
    finished = repository.now()
    await repository.keeper.update_mirror_state(
        last_success=finished, last_success_started=started, mirrored_archives=archives,
        uploaded_bytes=progress.uploaded_bytes, error=None,
        last_verified=finished if compared is None else previous.last_verified,
    )
    await measure(parts)
    return {
        "uploaded_bytes": progress.uploaded_bytes,
        "uploaded_files": progress.uploaded_files,
        "deleted_files": progress.deleted_files,
        "compared": "all" if compared is None else "changed",
        "compared_files": compared,
    }


def changed_files(folder: str, since: float | None) -> tuple[str, ...] | None:
    """The repository's files (relative paths) written since the given time; None: compare all."""
    if since is None:
        return None
    changed = []
    for root, folders, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative.startswith("lock."):
                continue
            try:
                if os.lstat(path).st_mtime >= since - MTIME_MARGIN_SECONDS:
                    changed.append(relative)
            except OSError:
                continue
    return tuple(sorted(changed)) if len(changed) <= MOST_FILES_COMPARED_BY_NAME else None


async def _compare(parts: MirrorParts, mirror: MirrorConfig, folder: str,
                   changed: tuple[str, ...] | None) -> int | None:
    """Compare sizes and hashes of the changed files (or of all) with the bucket's; the number
    of files compared by name, or None when the whole repository was."""
    if changed == ():
        return 0
    command = rclone.compare(folder, mirror.remote, changed)
    try:
        await rclone.run_rclone(command, mirror.rclone_environment(), parts.secrets(),
                                stall_seconds=parts.repository.settings().mirror_stall_seconds)
    except RcloneFailed as failure:
        log_failure(failure)
        error = mirror_error(failure, mirror.location())
        if error.code != ErrorCode.MIRROR_FAILED:
            raise error from None
        counted = next((match for text in failure.errors if (match := _DIFFERENCES.search(text))), None)
        differences = f"{counted[1]} differences" if counted else "differences"
        raise RpcError(ErrorCode.MIRROR_FAILED, f"{mirror.location()} does not match the repository after the "
                       f"copy: {differences}, the first: {failure.reason(first=True)}",
                       {"exit_code": failure.exit_code}) from None
    return None if changed is None else len(changed)


async def measure(parts: MirrorParts) -> None:
    """Measure the local repository's size and what is not off-site yet, off the event loop."""
    config = parts.repository.configured()
    if config is None or remote_location(config.repository) is not None:
        return
    since = parts.repository.keeper.mirror_state.last_success_started if parts.mirroring.current else None
    parts.mirroring.measured(await trio.to_thread.run_sync(
        measure_local_repository, config.repository.removeprefix("file://"), since))
