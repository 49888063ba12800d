"""What is known about the mirror: its last success and error, what is not off-site yet, the
local repository's size. Persisted as mirror-state.json; the sizes are measured, not saved."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from backupctl.protocol import ErrorCode
from backupctl.records import MirrorOverview
from backupd.borg.transactions import read_repository_files, segment_number
from backupd.mirror.config import MirrorConfig
from backupd.state import Problem

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
    """The repository's size, and what of what a mirror would upload (the committed files: not
    borg's lock, nor segments past its index, which a failed snapshot leaves until its next
    run) was written since the last successful mirror began; blocking, for a worker thread."""
    try:
        files = read_repository_files(folder, read_tails=False)
    except OSError:
        return LocalUsage()
    size = waiting = 0
    for path, info in _sizes(folder, (*files.root_files, *(segment.path for segment in files.segments.values()))):
        size += info.st_size
        number = segment_number(path)
        uploaded = number is None or (files.transaction is not None and number <= files.transaction)
        if uploaded and (mirrored_since is None or info.st_mtime >= mirrored_since):
            waiting += info.st_size
    return LocalUsage(size=size, waiting=waiting, measured=True)


def _sizes(folder: str, paths: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
    found = []
    for path in paths:
        try:
            found.append((path, os.lstat(os.path.join(folder, path))))
        except OSError:
            continue
    return found


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
