"""Room for a restore: a restore writes a whole second copy of each target before the old one
is deleted, so each file system must hold what the restore writes on top of what it holds."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from backupd.browse.index import SnapshotIndex
from backupd.restore.contents import SnapshotContents
from backupd.restore.nofollow import deepest_existing
from backupd.restore.staging_place import mount_point_of


@dataclass(frozen=True)
class Room:
    """What the restore writes on one file system, and what is free there."""

    mount_point: str
    needed: int
    free: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.free

    def to_record(self) -> dict[str, Any]:
        return asdict(self)



def bytes_by_target(index: SnapshotIndex, targets: Iterable[str], contents: SnapshotContents) -> dict[str, int]:
    """The bytes of the regular files the snapshot holds under each target."""
    return {target: index.file_bytes(contents.archive_path(target)) for target in targets}


def room_for(needed_by_target: Mapping[str, int]) -> list[Room]:
    """The room on each file system the targets lie on, for the bytes each target needs."""
    needed: dict[str, int] = {}
    for target, size in needed_by_target.items():
        mount_point = mount_point_of(deepest_existing(target))
        needed[mount_point] = needed.get(mount_point, 0) + size
    return [Room(mount_point, size, free_bytes(mount_point)) for mount_point, size in needed.items()]


def free_bytes(path: str) -> int:
    """Bytes a root process may still write on path's file system."""
    info = os.statvfs(path)
    return info.f_bfree * info.f_frsize


def on_one_file_system(targets: Iterable[str]) -> bool:
    return len({mount_point_of(deepest_existing(target)) for target in targets}) <= 1

