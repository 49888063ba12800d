"""Restoring onto a new box from a bucket: the repository is downloaded beside its folder,
resumably, and renamed into place once whole."""

from __future__ import annotations

import logging
import os
import stat

import trio

from backupd.actions.bucket import MirrorProgress, check_bucket, require_local, run
from backupd.actions.parts import MirrorParts
from backupd.config import BackupConfig
from backupd.errors import invalid_params
from backupd.jobs import ReportProgress
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig
from backupd.progress import progress_with
from backupd.restore.nofollow import PRIVATE_FOLDER_MODE, components, lstat, make_folder, remove_empty_folder, rename
from backupd.restore.staging_place import unsafe_reason

log = logging.getLogger(__name__)

DOWNLOAD_STEPS = (
    ("downloading segments", rclone.download_segments),
    ("downloading the index", rclone.download_metadata),
)


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


async def connect_to_bucket(parts: MirrorParts, config: BackupConfig, mirror: MirrorConfig,
                            report: ReportProgress) -> str | None:
    """Check the bucket before the repository is connected to; when the repository folder is
    missing or empty and the bucket holds a repository under the prefix, download it there
    (resuming a download that was stopped). Returns the id of the bucket's repository."""
    folder = require_local(config)
    report(progress_with(step="checking the bucket", location=mirror.location()))
    remote_id = await check_bucket(parts, mirror)
    if remote_id is None or not await trio.to_thread.run_sync(holds_nothing, folder):
        return remote_id
    staging = download_folder(folder)
    await trio.to_thread.run_sync(prepare_download_folder, staging)
    log.info("downloading the repository from %s into %s", mirror.location(), folder)
    progress = MirrorProgress(report)
    for name, build in DOWNLOAD_STEPS:
        result = await run(parts, mirror, build(mirror.remote, staging), on_stats=progress.step(name))
        progress.step_done(result.stats)
    await trio.to_thread.run_sync(_put_in_place, staging, folder)
    return remote_id


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


def _put_in_place(staging: str, folder: str) -> None:
    if lstat(folder) is not None:
        remove_empty_folder(folder)  # empty: holds_nothing said so
    rename(staging, folder)
