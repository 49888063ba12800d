"""What is known about the mirror: its last success and error, what is not off-site yet, the
local repository's size. Persisted as mirror-state.json; the sizes are measured, not saved."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from backupctl.protocol import ErrorCode
from backupctl.records import MirrorOverview
from backupd.mirror.config import MirrorConfig
from backupd.state import Problem

LOCK_NAMES = frozenset({"lock.exclusive", "lock.roster"})


@dataclass(frozen=True)
class MirrorState:
    last_success: float | None = None
    # When the last successful mirror began: what the repository held then is off-site.
    last_success_started: float | None = None
    mirrored_archives: tuple[str, ...] = ()
    uploaded_bytes: int = 0
    error: Problem | None = None
    last_verified: float | None = None
    # Repository files a comparison found different in the bucket, until a mirror re-uploads them.
    damaged: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MirrorState:
        error = record.get("error")
        return cls(
            last_success=record.get("last_success"),
            last_success_started=record.get("last_success_started"),
            mirrored_archives=tuple(record.get("mirrored_archives", ())),
            uploaded_bytes=record.get("uploaded_bytes", 0),
            error=Problem.from_record(error) if error else None,
            last_verified=record.get("last_verified"),
            damaged=tuple(path for path in record.get("damaged", ()) if isinstance(path, str)),
        )


@dataclass(frozen=True)
class LocalUsage:
    """The local repository's size, and the part of it written since the last successful mirror began."""

    size: int = 0
    waiting: int = 0
    measured: bool = field(default=False)


def measure_local_repository(folder: str, mirrored_since: float | None) -> LocalUsage:
    """Walk the repository folder (borg's lock left out); blocking, for a worker thread."""
    size = waiting = 0
    for root, folders, files in os.walk(folder):
        if root == folder:
            folders[:] = [name for name in folders if name not in LOCK_NAMES]
        for name in files:
            if root == folder and name in LOCK_NAMES:
                continue
            try:
                status = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size += status.st_size
            if mirrored_since is None or status.st_mtime >= mirrored_since:
                waiting += status.st_size
    return LocalUsage(size=size, waiting=waiting, measured=True)


def mirror_record(mirror: MirrorConfig, state: MirrorState, not_off_site: int, usage: LocalUsage,
                  running: bool) -> MirrorOverview:
    """The overview's `mirror` record."""
    waiting = usage.waiting if usage.measured else None
    if running:
        status = "running"
    elif state.error is not None and state.error.code == ErrorCode.MIRROR_TAKEN_OVER:
        status = "taken_over"
    elif state.error is not None:
        status = "failed"
    elif state.last_success is None or not_off_site or waiting:
        status = "behind"
    else:
        status = "current"
    return MirrorOverview(location=mirror.location(), state=status, last_success=state.last_success,
                          snapshots_not_off_site=not_off_site, bytes_waiting=waiting,
                          uploaded_bytes=state.uploaded_bytes, last_verified=state.last_verified,
                          last_error=state.error.record() if state.error else None)
