"""Reading what a repository holds: its snapshot count, the latest snapshot, its stored size."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from backupctl.protocol import RpcError
from backupd.archive_names import OwnArchives, is_checkpoint
from backupd.borg import commands
from backupd.config import BackupConfig
from backupd.service import Service
from backupd.state import ArchiveEntry, SnapshotSummary

log = logging.getLogger(__name__)


# Connecting on purpose to a repository this box has not seen at this location (a
# reinstalled box, a moved repository) is how restore starts; borg would refuse it.
ADOPT_REPOSITORY_ENV = {"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}


async def read_repository(service: Service, config: BackupConfig, adopt: bool = False) -> dict[str, Any]:
    """The repository facts of the overview, from `borg list` and `borg info` of the newest
    snapshot. Checkpoints of interrupted snapshots are not snapshots: they are neither listed
    nor counted, and never the last snapshot."""
    env = ADOPT_REPOSITORY_ENV if adopt else None
    listing = await service.borg(commands.list_archives(config.repository, checkpoints=True), config=config, env=env)
    listed = (listing.json or {}).get("archives") or []
    archives = tuple(archive_entry(archive) for archive in listed if not is_checkpoint(archive.get("name", "")))
    newest = max(archives, key=lambda archive: archive.time, default=None)
    info_command = (commands.info_latest(config.repository) if newest is None
                    else commands.info_archive(config.repository, newest.name))
    info = await service.borg(info_command, config=config, env=env)
    latest_archives = [archive for archive in (info.json or {}).get("archives") or []
                       if not is_checkpoint(archive.get("name", ""))]
    latest = summary_from_archive(latest_archives[0]) if latest_archives else None
    own = OwnArchives.of_host(service.settings.hostname)
    return {
        "last_snapshot": latest,
        "archives": archives,
        "total_size": stored_size(info.json),
        "file_count": latest.files if latest else 0,
        "checkpoints_left": any(own.owns_checkpoint(archive.get("name", "")) for archive in listed),
    }


EMPTY_REPOSITORY: dict[str, Any] = {
    "last_snapshot": None,
    "archives": (),
    "total_size": 0,
    "file_count": 0,
    "checkpoints_left": False,
}


async def refresh(service: Service) -> None:
    """Re-read the configured repository; a failure becomes the overview's problem."""
    config = service.config
    if config is None:
        return
    service.activity = "reading the repository"
    try:
        async with service.repository_lock:
            facts = await read_repository(service, config)
    except RpcError as error:
        log.warning("cannot read repository %s: %s", config.repository, error.message)
        await service.update_repository(problem=service.problem_from(error.code, error.message, "refresh"))
        return
    finally:
        service.activity = "idle"
    problem = service.repository.problem
    if problem is not None and problem.operation == "refresh":
        problem = None
    await service.update_repository(**facts, problem=problem)


def summary_from_archive(archive: dict[str, Any]) -> SnapshotSummary:
    """A snapshot summary from the archive map of `borg create --json` or `borg info --json`."""
    stats = archive.get("stats", {})
    return SnapshotSummary(
        name=archive.get("name", ""),
        time=borg_time(archive.get("start")),
        duration=float(archive.get("duration") or 0.0),
        files=int(stats.get("nfiles", 0)),
        original_size=int(stats.get("original_size", 0)),
        deduplicated_size=int(stats.get("deduplicated_size", 0)),
    )


def archive_entry(archive: dict[str, Any]) -> ArchiveEntry:
    """An entry of the snapshot list from an archive map of `borg list --json` or `borg create --json`."""
    return ArchiveEntry(
        name=archive.get("name", ""),
        id=archive.get("id", ""),
        time=borg_time(archive.get("start") or archive.get("time")),
    )


def stored_size(borg_json: dict[str, Any] | None) -> int:
    """Bytes the repository stores for all archives: deduplicated and compressed."""
    stats = ((borg_json or {}).get("cache") or {}).get("stats") or {}
    return int(stats.get("unique_csize", 0))


def borg_time(value: str | None) -> float:
    """Borg prints local time without a zone; this process shares borg's zone."""
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0
