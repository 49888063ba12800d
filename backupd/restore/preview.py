"""What a restore would change: the snapshot's index against the disk as it is now, one folder
at a time, so memory holds one folder's names whatever the snapshot's size."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backupd.browse.index import Entry, SnapshotIndex, name_bytes
from backupd.restore.contents import SnapshotContents
from backupd.restore.nofollow import lstat, opened_folder
from backupd.restore.space import Room, bytes_by_target, room_for

MAX_LISTED = 100
PAGE = 1000
_KINDS = {"file": stat.S_IFREG, "folder": stat.S_IFDIR, "link": stat.S_IFLNK}
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class PathList:
    count: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.paths) < MAX_LISTED:
            self.paths.append(path)


@dataclass
class RestorePreview:
    written: PathList = field(default_factory=PathList)
    replaced: PathList = field(default_factory=PathList)
    removed: PathList = field(default_factory=PathList)
    kept: PathList = field(default_factory=PathList)  # not in the snapshot, matched by its excludes
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # targets the snapshot does not hold

    def to_record(self) -> dict[str, Any]:
        return {
            "written": {"count": self.written.count, "paths": self.written.paths},
            "replaced": {"count": self.replaced.count, "paths": self.replaced.paths},
            "removed": {"count": self.removed.count, "paths": self.removed.paths},
            "kept": {"count": self.kept.count, "paths": self.kept.paths},
            "unchanged": self.unchanged,
        }


@dataclass
class DryRun:
    """A dry run's answer: the changes, and the bytes written with the room for them (left out
    when the snapshot lacks a target)."""

    changes: RestorePreview
    bytes: int = 0
    rooms: list[Room] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {**self.changes.to_record(), "bytes": self.bytes, "space": [room.to_record() for room in self.rooms]}


def dry_run(index: SnapshotIndex, targets: tuple[str, ...], contents: SnapshotContents,
            excluded: Callable[[str], bool]) -> DryRun:
    changes = preview(index, targets, contents, excluded)
    if changes.missing:
        return DryRun(changes)
    needed = bytes_by_target(index, targets, contents)
    return DryRun(changes, sum(needed.values()), room_for(needed))


def preview(index: SnapshotIndex, targets: Iterable[str], contents: SnapshotContents,
            excluded: Callable[[str], bool] = lambda place: False) -> RestorePreview:
    """Compare the snapshot's items under each target with the disk; ``contents`` says where
    a place is in the archive.

    Each target is restored whole, so anything under it that the snapshot lacks is removed,
    but for what ``excluded`` says the snapshot's exclude patterns match: that is kept.
    Folders on the disk are read through descriptors opened with O_NOFOLLOW.
    """
    comparison = _Comparison(index, excluded)
    for target in targets:
        comparison.target(target, contents.archive_path(target))
    return comparison.result


class _Comparison:
    def __init__(self, index: SnapshotIndex, excluded: Callable[[str], bool]) -> None:
        self.index = index
        self.excluded = excluded
        self.result = RestorePreview()

    def target(self, target: str, archive_path: str) -> None:
        entry = self.index.entry(archive_path)
        current = lstat(target)
        if entry is None:
            self.result.missing.append(target)
            return
        parent, name = os.path.split(target)
        if current is None:
            self._written(target, archive_path, entry)
            return
        with opened_folder(parent) as parent_fd:
            self._compared(parent_fd, name, target, archive_path, entry, current)

    def _compared(self, parent_fd: int, name: str, place: str, archive_path: str, entry: Entry,
                  current: os.stat_result) -> None:
        if _same(entry, current):
            # Counted as the overview counts: files, not the folders that hold them.
            self.result.unchanged += 0 if entry.kind == "folder" else 1
        else:
            self.result.replaced.add(place)
        live_folder = stat.S_ISDIR(current.st_mode)
        if entry.kind == "folder" and live_folder:
            with _child_folder(parent_fd, name) as fd:
                if fd is not None:
                    self._folder(fd, place, archive_path)
                else:
                    self._written_children(place, archive_path)
        elif entry.kind == "folder":
            self._written_children(place, archive_path)
        elif live_folder:
            with _child_folder(parent_fd, name) as fd:
                if fd is not None:
                    self._removed_children(fd, place)

    def _folder(self, fd: int, place: str, archive_path: str) -> None:
        """A folder both hold: its names merged in byte order with the snapshot's."""
        live = sorted(os.listdir(fd), key=name_bytes)
        live_at = 0
        for entry in _children(self.index, archive_path):
            key = name_bytes(entry.name)
            while live_at < len(live) and name_bytes(live[live_at]) < key:
                self._removed_or_kept(fd, live[live_at], _child(place, live[live_at]))
                live_at += 1
            child, child_archive = _child(place, entry.name), f"{archive_path}/{entry.name}"
            current = None
            if live_at < len(live) and live[live_at] == entry.name:
                live_at += 1
                current = _stat_at(fd, entry.name)
            if current is None:
                self._written(child, child_archive, entry)
            else:
                self._compared(fd, entry.name, child, child_archive, entry, current)
        for name in live[live_at:]:
            self._removed_or_kept(fd, name, _child(place, name))

    def _written(self, place: str, archive_path: str, entry: Entry) -> None:
        self.result.written.add(place)
        if entry.kind == "folder":
            self._written_children(place, archive_path)

    def _written_children(self, place: str, archive_path: str) -> None:
        for path, _ in self.index.walk(archive_path):
            self.result.written.add(place + path[len(archive_path):])

    def _removed_or_kept(self, parent_fd: int, name: str, place: str) -> None:
        if self.excluded(place):
            self.result.kept.add(place)
            return
        self.result.removed.add(place)
        current = _stat_at(parent_fd, name)
        if current is not None and stat.S_ISDIR(current.st_mode):
            with _child_folder(parent_fd, name) as fd:
                if fd is not None:
                    self._removed_children(fd, place)

    def _removed_children(self, fd: int, place: str) -> None:
        for name in os.listdir(fd):
            self._removed_or_kept(fd, name, _child(place, name))


def _children(index: SnapshotIndex, archive_path: str) -> Iterator[Entry]:
    after = b""
    while entries := index.children(archive_path, after, PAGE):
        yield from entries
        after = name_bytes(entries[-1].name)


class _child_folder:
    """A folder's descriptor opened without following a link, or None when it is not one now."""

    def __init__(self, parent_fd: int, name: str) -> None:
        self._parent_fd, self._name = parent_fd, name
        self._fd: int | None = None

    def __enter__(self) -> int | None:
        try:
            self._fd = os.open(self._name, _FOLDER_FLAGS, dir_fd=self._parent_fd)
        except OSError:
            self._fd = None
        return self._fd

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _stat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _child(place: str, name: str) -> str:
    return f"{place.rstrip('/')}/{name}"



def _same(entry: Entry, current: os.stat_result) -> bool:
    kind = _KINDS.get(entry.kind)
    if kind is None or stat.S_IFMT(current.st_mode) != kind:
        return False
    if kind == stat.S_IFDIR:
        return True
    if kind == stat.S_IFLNK:
        return entry.mtime is not None and abs(entry.mtime - current.st_mtime) < 1e-3
    same_time = entry.mtime is not None and abs(entry.mtime - current.st_mtime) < 1e-3
    return same_time and entry.size == current.st_size
