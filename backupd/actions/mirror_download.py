"""Restoring onto a new box from a bucket: the repository is downloaded beside its folder,
resumably, and renamed into place once whole."""

from __future__ import annotations

import logging
import os
from functools import partial

import trio

from backupd.actions.bucket import MirrorProgress, check_bucket, require_local, run
from backupd.config import BackupConfig
from backupd.jobs import ReportProgress
from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig
from backupd.service import Service

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


async def connect_to_bucket(service: Service, config: BackupConfig, mirror: MirrorConfig,
                            report: ReportProgress) -> str | None:
    """Check the bucket before the repository is connected to; when the repository folder is
    missing or empty and the bucket holds a repository under the prefix, download it there
    (resuming a download that was stopped). Returns the id of the bucket's repository."""
    folder = require_local(config)
    report({"step": "checking the bucket", "location": mirror.location()})
    remote_id = await check_bucket(service, mirror)
    if remote_id is None or not await trio.to_thread.run_sync(holds_nothing, folder):
        return remote_id
    staging = download_folder(folder)
    await trio.to_thread.run_sync(partial(os.makedirs, staging, mode=0o700, exist_ok=True))
    log.info("downloading the repository from %s into %s", mirror.location(), folder)
    progress = MirrorProgress(report)
    for name, build in DOWNLOAD_STEPS:
        result = await run(service, mirror, build(mirror.remote, staging), on_stats=progress.step(name))
        progress.step_done(result.stats)
    await trio.to_thread.run_sync(_put_in_place, staging, folder)
    return remote_id


def _put_in_place(staging: str, folder: str) -> None:
    if os.path.isdir(folder):
        os.rmdir(folder)  # empty: holds_nothing said so
    os.rename(staging, folder)
