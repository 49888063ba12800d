"""Reading what a repository holds: its snapshot count, the latest snapshot, its stored size."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import partial
from typing import Any, cast

import trio

from backupctl.protocol import RpcError
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from backupd.borg.invoker import BorgInvoker
from backupd.borg.archives import BorgArchive, archives_in, listed_archives, stored_size
from backupd.borg.transactions import repository_marker
from backupd.config import BackupConfig
from backupd.actions.parts import RepositoryParts
from backupd.errors import not_found
from backupd.state import ArchiveEntry, ArchivesByAge, SnapshotSummary, in_age_order, reusing_known

log = logging.getLogger(__name__)

FIRST_RETRY = 5.0
LAST_RETRY = 600.0
IDLE_CHECK_INTERVAL = 600.0


class Activity(StrEnum):
    """What the daemon does outside jobs, as systemd's status line says it."""

    IDLE = "idle"
    READING_REPOSITORY = "reading the repository"


NowDoing = Callable[[Activity], None]


# Connecting on purpose to a repository this box has not seen at this location (a
# reinstalled box, a moved repository) is how restore starts; borg would refuse it.
ADOPT_REPOSITORY_ENV = {"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}


async def read_repository(borg: BorgInvoker, hostname: str | None, config: BackupConfig,
                          adopt: bool = False, known: Sequence[ArchiveEntry] = ()) -> dict[str, Any]:
    """The repository facts of the overview, from `borg list` and `borg info` of the newest
    snapshot. Checkpoints of interrupted snapshots are not snapshots: they are neither listed
    nor counted, and never the last snapshot. An archive among the ``known`` ones keeps its entry."""
    env = ADOPT_REPOSITORY_ENV if adopt else None
    own = OwnArchives.of_host(hostname)
    listing = await borg.run(commands.list_archives(config.repository, checkpoints=True), config=config, env=env,
                             read_json=partial(_snapshots_in, own=own, known=known))
    archives, checkpoints_left = cast(tuple[ArchivesByAge, bool], listing.json)  # what _snapshots_in read
    newest = archives[-1] if archives else None
    info_command = (commands.info_latest(config.repository) if newest is None
                    else commands.info_archive(config.repository, newest.name))
    info = await borg.run(info_command, config=config, env=env)
    latest_archives = [archive for archive in archives_in(info.json) if not archive.is_checkpoint]
    latest = summary_from_archive(latest_archives[0]) if latest_archives else None
    return {
        "last_snapshot": latest,
        "archives": archives,
        "total_size": stored_size(info.json),
        "file_count": latest.files if latest else 0,
        "checkpoints_left": checkpoints_left,
    }


EMPTY_REPOSITORY: dict[str, Any] = {
    "last_snapshot": None,
    "archives": (),
    "total_size": 0,
    "file_count": 0,
    "checkpoints_left": False,
}


async def refresh(parts: RepositoryParts, now_doing: NowDoing) -> bool:
    """Re-read the configured repository; a failure becomes the overview's problem. Whether
    the repository could be read (or there is none to read)."""
    config = parts.configured()
    if config is None:
        return True
    now_doing(Activity.READING_REPOSITORY)
    try:
        async with parts.keeper.lock:
            facts = await read_repository(parts.borg, parts.settings().hostname, config,
                                          known=parts.keeper.repository.archives)
    except RpcError as error:
        log.warning("cannot read repository %s: %s", config.repository, error.message)
        await parts.keeper.update(problem=parts.keeper.problem_from(error.code, error.message, "refresh"))
        return False
    finally:
        now_doing(Activity.IDLE)
    problem = parts.keeper.repository.problem
    if problem is not None and problem.operation == "refresh":
        problem = None
    await parts.keeper.update(**facts, problem=problem)
    return True


async def keep_view_current(parts: RepositoryParts, now_doing: NowDoing,
                            check_interval: float = IDLE_CHECK_INTERVAL) -> None:
    """Read the repository at start, again and again with back-off until that works (a lock
    held at boot, a disk not yet mounted); then, while idle, re-read it when something other
    than the daemon changed it (archives made or deleted with plain borg)."""
    delay = FIRST_RETRY
    while not await refresh(parts, now_doing):
        log.info("reading the repository again in %.0f s", delay)
        await trio.sleep(delay)
        delay = min(delay * 2, LAST_RETRY)
    while True:
        await trio.sleep(check_interval)
        if parts.jobs.current is None and not parts.keeper.lock.locked():
            async with parts.keeper.lock:
                await refresh_if_changed(parts)


async def refresh_if_changed(parts: RepositoryParts) -> None:
    """Re-read the archive list when the repository changed since the daemon last used it; a
    directory listing tells, for a local repository. Called with the repository lock held."""
    config = parts.configured()
    if config is None:
        return
    marker = await trio.to_thread.run_sync(repository_marker, config.repository)
    if marker is None or marker == parts.borg.marker:
        return
    log.info("repository %s changed outside the daemon: reading it again", config.repository)
    try:
        facts = await read_repository(parts.borg, parts.settings().hostname, config,
                                      known=parts.keeper.repository.archives)
    except RpcError as error:
        log.warning("cannot read repository %s: %s", config.repository, error.message)
        return
    await parts.keeper.update(**facts)


def _snapshots_in(listing: Any, own: OwnArchives, known: Sequence[ArchiveEntry]) -> tuple[ArchivesByAge, bool]:
    """The snapshots of a `borg list --json` answer, oldest first, checkpoints left out; and
    whether this box's interrupted snapshots left checkpoints. Run in a worker thread: ``known``
    is only read."""
    listed = listed_archives(listing)
    snapshots = in_age_order(reusing_known(
        (archive_entry(archive) for archive in listed if not archive.is_checkpoint), known))
    return snapshots, any(own.owns_checkpoint(archive.name) for archive in listed)


def chosen_archive(archives: Sequence[ArchiveEntry], name: str | None) -> ArchiveEntry:
    """The snapshot of that name, or the newest when none is named (archives are oldest first)."""
    if name is None:
        if not archives:
            raise not_found("snapshot: the repository holds none")
        return archives[-1]
    for archive in archives:
        if archive.name == name:
            return archive
    raise not_found(f"snapshot {name!r}")



def summary_from_archive(archive: BorgArchive) -> SnapshotSummary:
    """A snapshot summary from the archive of `borg create --json` or `borg info --json`."""
    return SnapshotSummary(
        name=archive.name,
        time=archive.time,
        duration=archive.duration,
        files=archive.files,
        original_size=archive.original_size,
        deduplicated_size=archive.deduplicated_size,
    )


def archive_entry(archive: BorgArchive) -> ArchiveEntry:
    """An entry of the snapshot list from an archive of `borg list --json` or `borg create --json`."""
    return ArchiveEntry(name=archive.name, id=archive.id, time=archive.time)
