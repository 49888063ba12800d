"""The off-site mirror's policy: setting it up, and each mirror job: in what order the
repository is copied, and the comparison with the bucket afterwards."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
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
    list_prefix,
    log_step,
    require_local,
    require_mirror,
    run,
)
from backupd.actions.parts import MirrorParts
from backupd.actions.prefix_owner import check_owner, claim_ownership, keep_claim, still_owner
from backupd.actions.repository import refresh_if_changed
from backupd.borg.transactions import is_transaction_file, repository_marker
from backupd.jobs import Job, ReportProgress
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig, mirror_from_params
from backupd.mirror.errors import EXIT_DIRECTORY_NOT_FOUND, RcloneFailed, mirror_error
from backupd.mirror.owner import new_claim
from backupd.mirror.plan import BucketAhead, RemoteFiles, UploadPlan, leftovers_to_verify, plan_upload
from backupd.mirror.staging import RepositoryBusy, Staged, stage_repository
from backupd.mirror.state import MirrorState, measure_local_repository
from backupd.progress import progress_with
from backupd.ssh import remote_location
from backupd.state import Problem

# A run whose first uploads took longer than this looks again that the prefix is still its own.
OWNER_RECHECK_SECONDS = 30.0
# Files written within this much before the last mirror began are compared again.
MTIME_MARGIN_SECONDS = 2.0


async def configure_mirror(parts: MirrorParts, params: dict[str, Any],
                           requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    folder = require_local(parts.repository.require_config())
    mirror = mirror_from_params(params, parts.box_name())
    work = partial(_set_up, parts, mirror, folder, params.get("take_over", False), params.get("replace_object_count"))
    job = parts.repository.jobs.start("mirror_setup", "manual", work, requested_by)
    await parts.repository.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return cast(dict[str, Any], job.result)


async def _set_up(parts: MirrorParts, mirror: MirrorConfig, folder: str, take_over: bool,
                  replace_object_count: int | None, job: Job, report: ReportProgress) -> dict[str, Any]:
    report(progress_with(step="checking the bucket", location=mirror.location()))
    remote_id = await check_bucket(parts, mirror)
    local_id = await trio.to_thread.run_sync(local_repository_id, folder)
    taken_over = await claim_prefix(parts, mirror, remote_id, local_id, take_over, replace_object_count,
                                    "replace_object_count", local_folder=folder)
    mirror = keep_claim(parts, mirror)
    await claim_ownership(parts, mirror, take_over)
    await adopt(parts, mirror)
    return {"location": mirror.location(), "taken_over": taken_over}


async def adopt(parts: MirrorParts, mirror: MirrorConfig) -> None:
    """Save the mirror; its record starts afresh when it is another bucket or prefix, and a
    prefix taken back from another box is no longer said to be lost."""
    previous = parts.mirroring.current
    mirror = keep_claim(parts, mirror)
    await parts.mirroring.save(mirror)
    if previous is None or previous.location() != mirror.location():
        await parts.repository.keeper.update_mirror_state(**vars(MirrorState()))
    elif (error := parts.repository.keeper.mirror_state.error) is not None and error.code == ErrorCode.MIRROR_TAKEN_OVER:
        await parts.repository.keeper.update_mirror_state(error=None)


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


async def _mirror(parts: MirrorParts, compare_whole: bool, job: Job, report: ReportProgress) -> dict[str, Any]:
    repository = parts.repository
    mirror = require_mirror(parts)
    if not mirror.claim:
        mirror = replace(mirror, claim=new_claim())
        await parts.mirroring.save(mirror)
    folder = require_local(repository.require_config())
    progress = MirrorProgress(report)
    started = repository.now()
    previous = repository.keeper.mirror_state
    try:
        async with repository.keeper.lock:
            await refresh_if_changed(repository)
            before = await trio.to_thread.run_sync(repository_marker, folder)
            archives = tuple(archive.name for archive in repository.keeper.repository.archives)
            staged = await _stage(parts, folder)
            since = previous.last_success_started
            compare_whole = compare_whole or since is None
            damaged = previous.damaged
            if compare_whole:
                damaged = tuple(sorted({*damaged, *await _compare_all(parts, mirror, folder, staged, progress)}))
                if damaged != previous.damaged:
                    await repository.keeper.update_mirror_state(damaged=damaged)
            changed = await trio.to_thread.run_sync(changed_files, folder, since)
            compared = (*damaged, *(changed if changed is not None else ()))
            remote = await _list_bucket(parts, mirror)
            listed_at = trio.current_time()
            await check_owner(parts, mirror, remote.sizes)
            upload = await _plan(parts, mirror, folder, staged, remote, compared)
            await _upload(parts, mirror, folder, staged, upload, progress, listed_at)
            log_step(f"compared {len(upload.parallel) + len(upload.in_order)} files and the index files with the "
                     "bucket by size and hash, each sent only where it differed")
            if await trio.to_thread.run_sync(repository_marker, folder) != before:
                raise RpcError(ErrorCode.MIRROR_FAILED, "The repository changed while it was copied (a borg "
                               "process outside the daemon wrote to it); the next mirror copies it again")
    except RpcError as error:
        since_error = previous.error.since if previous.error and previous.error.code == error.code else repository.now()
        await repository.keeper.update_mirror_state(error=Problem(error.code, error.message, since_error, "mirror"))
        raise
    finished = repository.now()
    await repository.keeper.update_mirror_state(
        last_success=finished, last_success_started=started, mirrored_archives=archives,
        uploaded_bytes=progress.uploaded_bytes, error=None, damaged=(),
        last_verified=finished if compare_whole else previous.last_verified,
    )
    await measure(parts)
    return {
        "uploaded_bytes": progress.uploaded_bytes,
        "uploaded_files": progress.uploaded_files,
        "deleted_files": progress.deleted_files,
        "compared": "all" if compare_whole else "changed",
        "compared_files": None if compare_whole else len(compared),
        "repaired_files": len(damaged),
    }


async def _stage(parts: MirrorParts, folder: str) -> Staged:
    try:
        return await trio.to_thread.run_sync(stage_repository, folder, parts.repository.settings().state_dir)
    except RepositoryBusy:
        raise RpcError(ErrorCode.MIRROR_FAILED, "borg kept committing to the repository while the mirror read it "
                       "(a borg process outside the daemon); the next mirror tries again") from None
    except FileNotFoundError:
        raise RpcError(ErrorCode.REPOSITORY_NOT_FOUND, f"There is no repository at {folder}") from None
    except OSError as error:
        raise RpcError(ErrorCode.MIRROR_FAILED, f"The repository at {folder} could not be read for the mirror: "
                       f"{error.strerror or error}") from None


async def _list_bucket(parts: MirrorParts, mirror: MirrorConfig) -> RemoteFiles:
    try:
        files = await list_prefix(parts, mirror)
    except RpcError as error:
        if error.code == ErrorCode.MIRROR_FAILED and error.data.get("exit_code") == EXIT_DIRECTORY_NOT_FOUND:
            return RemoteFiles({})
        raise
    return RemoteFiles({file.path: file.size for file in files})


async def _plan(parts: MirrorParts, mirror: MirrorConfig, folder: str, staged: Staged, remote: RemoteFiles,
                compared: tuple[str, ...]) -> UploadPlan:
    """What to send and remove: leftovers of an interrupted run are kept only when their
    content is the local segment's."""
    leftovers = leftovers_to_verify(staged.files, remote)
    verified: tuple[str, ...] = ()
    if leftovers:
        log_step(f"comparing {len(leftovers)} segments past the bucket's index by their hashes")
        listed = await run(parts, mirror, rclone.remote_hashes(mirror.remote, staged.write_list("leftovers", leftovers)))
        remote_hashes = rclone.parse_hashes(listed.stdout)
        local_hashes = await trio.to_thread.run_sync(file_hashes, folder, leftovers)
        verified = tuple(path for path in leftovers if remote_hashes.get(path) == local_hashes.get(path))
    try:
        return plan_upload(staged.files, remote, verified, compared)
    except BucketAhead as ahead:
        raise RpcError(ErrorCode.MIRROR_FAILED, f"{mirror.location()} holds a later state of the repository "
                       f"(transaction {ahead.bucket_transaction}) than this box's ({ahead.local_transaction}): "
                       "another box writes there; nothing was uploaded") from None


async def _upload(parts: MirrorParts, mirror: MirrorConfig, folder: str, staged: Staged, upload: UploadPlan,
                  progress: MirrorProgress, listed_at: float) -> None:
    """Carry out the plan, in its order; any failure stops the run where it is. When the
    uploads took a while, the owner is looked at again before the bucket's state moves on."""
    if upload.removed_first:
        progress.step("removing what an interrupted upload left")
        for path in upload.removed_first:
            await run(parts, mirror, rclone.delete_file(f"{mirror.remote}/{path}"))
            progress.deleted_files += 1
    if upload.parallel:
        listed = staged.write_list("parallel", upload.parallel)
        result = await run(parts, mirror, rclone.upload_listed(folder, mirror.remote, listed),
                           on_stats=progress.step("uploading new segments"))
        progress.step_done(result.stats)
    if trio.current_time() - listed_at > OWNER_RECHECK_SECONDS:
        await still_owner(parts, mirror)
    if upload.in_order:
        on_stats = progress.step("uploading the segments that end a transaction, one at a time")
        for path in upload.in_order:
            result = await run(parts, mirror, rclone.upload_one(folder, mirror.remote, path), on_stats=on_stats)
            progress.step_done(result.stats)
    result = await run(parts, mirror, rclone.upload_root_files(staged.root_files, mirror.remote),
                       on_stats=progress.step("uploading the index"))
    progress.step_done(result.stats)
    if upload.removed_after:
        progress.step("removing deleted segments")
        for path in upload.removed_after:
            await run(parts, mirror, rclone.delete_file(f"{mirror.remote}/{path}"))
            progress.deleted_files += 1


async def _compare_all(parts: MirrorParts, mirror: MirrorConfig, folder: str, staged: Staged,
                       progress: MirrorProgress) -> tuple[str, ...]:
    """Compare every committed file of the repository with the bucket by size and hash; the
    ones that differ or are missing there."""
    progress.step("comparing with the bucket")
    report = os.path.join(staged.folder, "comparison")
    try:
        await rclone.run_rclone(rclone.compare_all(folder, mirror.remote, report), mirror.rclone_environment(),
                                parts.secrets() + mirror.secrets(),
                                stall_seconds=parts.repository.settings().mirror_stall_seconds)
    except RcloneFailed as failure:
        error = mirror_error(failure, mirror.location())
        if error.code != ErrorCode.MIRROR_FAILED:
            log_failure(failure)
            raise error from None
    text = await trio.to_thread.run_sync(_read_report, report)
    uploadable = {segment.path for segment in staged.files.committed_segments()} | {
        name for name in staged.files.root_files if not is_transaction_file(name, None)}
    damaged = tuple(path for path in rclone.parse_comparison(text) if path in uploadable)
    log_step(f"compared every file with the bucket: {len(damaged)} differ or are missing there"
             + (f", the first: {damaged[0]}" if damaged else ""), "WARNING" if damaged else "INFO")
    return damaged


def _read_report(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except FileNotFoundError:
        return ""


def file_hashes(folder: str, paths: tuple[str, ...]) -> dict[str, str]:
    """MD5 of repository files, as the storage service reports them; blocking, for a worker thread."""
    hashes = {}
    for path in paths:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            descriptor = os.open(os.path.join(folder, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        with os.fdopen(descriptor, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        hashes[path] = digest.hexdigest()
    return hashes


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
    return tuple(sorted(changed))


async def measure(parts: MirrorParts) -> None:
    """Measure the local repository's size and what is not off-site yet, off the event loop."""
    config = parts.repository.configured()
    if config is None or remote_location(config.repository) is not None:
        return
    since = parts.repository.keeper.mirror_state.last_success_started if parts.mirroring.current else None
    parts.mirroring.measured(await trio.to_thread.run_sync(
        measure_local_repository, config.repository.removeprefix("file://"), since))
