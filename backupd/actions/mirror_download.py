"""Configure with a mirror: a new box restoring from a bucket only reads it. When the
repository folder is missing or empty, the repository under the prefix is downloaded beside
the folder, resumably, as one committed state; borg opens the download before it is renamed
into place, and a download borg cannot use is deleted. Any other configure with a mirror
sets one up, and checks that the keys may write to the bucket."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.bucket import (
    SEARCH_DEPTH,
    MirrorProgress,
    check_bucket,
    check_bucket_readable,
    check_prefix_writable,
    list_prefix,
    local_repository_id,
    repositories_in_bucket,
    repository_id_in_config,
    require_local,
    run,
)
from backupd.actions.parts import MirrorParts
from backupd.actions.repository import read_repository
from backupd.config import BackupConfig
from backupd.errors import invalid_params
from backupd.jobs import ReportProgress
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig
from backupd.mirror.repository_copy import BucketFile, RepositoryCopy, repository_copy
from backupd.progress import progress_with
from backupd.restore.nofollow import (
    PRIVATE_FOLDER_MODE,
    components,
    lstat,
    make_folder,
    remove_empty_folder,
    remove_tree,
    rename,
)
from backupd.restore.staging_place import unsafe_reason

log = logging.getLogger(__name__)

# The bucket is listed again after each download; when the repository changed meanwhile (a box
# mirrors into it), what changed is fetched, this many times at most.
MOST_DOWNLOAD_ROUNDS = 5
# What borg says of a download that may be whole: a retry (the right passphrase, the lock gone)
# uses it again. Any other failure to open it means the bucket's copy cannot be used.
DOWNLOAD_KEPT_ON = frozenset({
    ErrorCode.PASSPHRASE_WRONG, ErrorCode.REPOSITORY_LOCKED, ErrorCode.REPOSITORY_UNREACHABLE,
    ErrorCode.DISK_FULL, ErrorCode.CANCELLED,
})


def download_folder(folder: str) -> str:
    """Where a repository is downloaded before it takes its place: beside it, so a download
    that was stopped continues, and the repository folder never holds half a repository."""
    parent, name = os.path.split(os.path.normpath(folder))
    return os.path.join(parent, f".{name}.download")


def holds_nothing(folder: str) -> bool:
    try:
        return not os.listdir(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False


async def connect_to_bucket(parts: MirrorParts, config: BackupConfig, mirror: MirrorConfig, may_create: bool,
                            report: ReportProgress) -> str | None:
    """Check the bucket before the repository is connected to. When the repository folder is
    missing or empty, the bucket is only read: the repository under the prefix is downloaded
    into the folder, or, with none there, one is created only when the caller may create
    (and the bucket must then take writes). A repository already in the folder is to be
    mirrored: the bucket must take writes. Returns the id of the bucket's repository."""
    folder = require_local(config)
    report(progress_with(step="checking the bucket", location=mirror.location()))
    if not await trio.to_thread.run_sync(holds_nothing, folder):
        return await check_bucket(parts, mirror)
    await check_bucket_readable(parts, mirror)
    files = await list_prefix(parts, mirror)
    copy = repository_copy(files)
    remote_id = await repository_id_in_config(parts, mirror) if copy.has_config else None
    if remote_id is not None:
        await download_repository(parts, config, mirror, remote_id, copy, report)
        return remote_id
    if not may_create:
        raise await no_repository_to_restore(parts, mirror, files)
    await check_prefix_writable(parts, mirror)
    return None


async def no_repository_to_restore(parts: MirrorParts, mirror: MirrorConfig,
                                   files: tuple[BucketFile, ...]) -> RpcError:
    """repository_not_found, naming the prefixes of the bucket that hold a repository."""
    prefixes = [prefix for prefix in await repositories_in_bucket(parts, mirror) if prefix != mirror.prefix]
    held = f"holds {len(files)} objects but no borg repository" if files else "holds no borg repository"
    if prefixes:
        found = f"The bucket holds a repository under: {', '.join(prefixes)}"
    else:
        found = f"The bucket holds no other borg repository (looked {SEARCH_DEPTH} levels down)"
    return RpcError(
        ErrorCode.REPOSITORY_NOT_FOUND,
        f"{mirror.location()} {held}: there is nothing to restore from it, and nothing was created. {found}. "
        "To start a new repository mirrored there instead, call configure with create: true",
        {"param": "mirror.prefix", "prefixes": prefixes},
    )


async def download_repository(parts: MirrorParts, config: BackupConfig, mirror: MirrorConfig, remote_id: str,
                              copy: RepositoryCopy, report: ReportProgress) -> None:
    """Download the repository under the prefix into the folder (continuing a download that
    was stopped), have borg open it, and only then put it in place."""
    folder = require_local(config)
    staging = download_folder(folder)
    await trio.to_thread.run_sync(prepare_download_folder, staging)
    if await trio.to_thread.run_sync(local_repository_id, staging) != remote_id:
        await trio.to_thread.run_sync(start_afresh, staging)
    log.info("downloading the repository from %s into %s", mirror.location(), folder)
    copy = await download_consistent_copy(parts, mirror, staging, copy, MirrorProgress(report))
    await trio.to_thread.run_sync(remove_files_not_in, staging, copy.paths())
    report(progress_with(step="opening the download", repository=folder))
    await open_download(parts, config, mirror, staging)
    await trio.to_thread.run_sync(_put_in_place, staging, folder)


async def download_consistent_copy(parts: MirrorParts, mirror: MirrorConfig, staging: str, copy: RepositoryCopy,
                                   progress: MirrorProgress) -> RepositoryCopy:
    """Fetch the files of one committed state, then list the prefix again: when that state
    changed meanwhile, fetch the new one's files (only those the folder lacks). The state
    the folder holds all of."""
    for _ in range(MOST_DOWNLOAD_ROUNDS):
        await fetch(parts, mirror, staging, copy, progress)
        listed_again = repository_copy(await list_prefix(parts, mirror))
        if listed_again == copy:
            return copy
        log.info("the repository in %s changed during the download: fetching what changed", mirror.location())
        copy = listed_again
    raise RpcError(ErrorCode.MIRROR_FAILED,
                   f"The repository in {mirror.location()} changed during each of {MOST_DOWNLOAD_ROUNDS} "
                   "downloads (is a box mirroring into it?); what was fetched stays for the next try")


async def fetch(parts: MirrorParts, mirror: MirrorConfig, staging: str, copy: RepositoryCopy,
                progress: MirrorProgress) -> None:
    """The index (with config, hints and the rest) by hash, then the segments by size."""
    state_dir = parts.repository.settings().state_dir
    steps = (("downloading the index", copy.metadata, True), ("downloading segments", copy.segments, False))
    for step, files, by_checksum in steps:
        if not files:
            continue
        with file_list(state_dir, files) as list_file:
            command = rclone.download_listed(mirror.remote, staging, list_file, by_checksum)
            result = await run(parts, mirror, command, on_stats=progress.step(step))
        progress.step_done(result.stats)


@contextmanager
def file_list(state_dir: Path, files: tuple[BucketFile, ...]) -> Iterator[str]:
    """A private temporary file in the state folder naming files one a line, for rclone's
    --files-from-raw; removed afterwards."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=state_dir, prefix=".download-",
                                     suffix=".list") as listed:
        listed.write("".join(f"{file.path}\n" for file in files))
        listed.flush()
        yield listed.name


async def open_download(parts: MirrorParts, config: BackupConfig, mirror: MirrorConfig, staging: str) -> None:
    """Have borg read the download as configure reads a repository. When borg cannot use it,
    it is deleted, all of it, so the next try downloads afresh."""
    repository = parts.repository
    try:
        async with repository.keeper.lock:
            await read_repository(repository.borg, repository.settings().hostname,
                                  dataclasses.replace(config, repository=staging), adopt=True)
    except RpcError as error:
        if error.code in DOWNLOAD_KEPT_ON:
            raise
        log.warning("the repository downloaded from %s is unusable (%s): deleting the download",
                    mirror.location(), error.message)
        await trio.to_thread.run_sync(remove_tree, staging)
        raise RpcError(ErrorCode.REPOSITORY_INVALID,
                       f"The repository in {mirror.location()} cannot be used: borg says: {error.message} "
                       "The download was deleted; mirror the repository into the bucket again from a box that "
                       "has it, or restore from another prefix", error.data) from None


def prepare_download_folder(staging: str) -> None:
    """rclone writes into the download folder by path, as root: every folder on the way must
    be one no other user can change, and the download folder root's own, never a link.
    Missing folders are made (0700) below the deepest that exists."""
    current = "/"
    for name in [None, *components(staging)]:
        if name is not None:
            current = os.path.join(current, name)
        info = lstat(current)
        if info is None:
            make_folder(current, PRIVATE_FOLDER_MODE)
            continue
        reason = unsafe_reason(info, current)
        if reason is None and current == staging and stat.S_IMODE(info.st_mode) & 0o077:
            reason = f"{current} can be read by other users"
        if reason is not None:
            raise invalid_params("repository", f"The repository cannot be downloaded there: {reason}. "
                                 "Choose a folder that only root can change")


def start_afresh(staging: str) -> None:
    """Empty a download folder that holds part of another repository (or files of unknown origin)."""
    remove_tree(staging)
    make_folder(staging, PRIVATE_FOLDER_MODE)


def remove_files_not_in(staging: str, kept: frozenset[str]) -> None:
    """Remove what the download folder holds beyond the state downloaded: an older index, a
    segment compacted away meanwhile, a lock left by a borg that was stopped."""
    for root, folders, files in os.walk(staging, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if os.path.relpath(path, staging).replace(os.sep, "/") not in kept:
                os.unlink(path)
        for name in folders:
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)
            elif not os.listdir(path):
                os.rmdir(path)


def _put_in_place(staging: str, folder: str) -> None:
    if lstat(folder) is not None:
        remove_empty_folder(folder)  # empty: holds_nothing said so
    rename(staging, folder)
