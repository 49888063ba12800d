"""What changed between two snapshots (from borg diff) or between a snapshot and the live files,
kept sorted by path in an SQLite file so it can be paged."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backupd.borg.diff_lines import DiffChange
from backupd.browse.index import CACHE_KIB, Entry, SnapshotIndex, name_bytes, name_text
from backupd.paths import is_within

CHANGE_KINDS = ("added", "removed", "modified")
SCHEMA = """
CREATE TABLE changes (path BLOB PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE counts (change TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Change:
    path: str  # a place on the box
    change: str  # added, removed or modified
    kind: str | None  # file, folder, link, other; None when borg does not say
    size: int | None = None  # now (added, or modified when known)
    old_size: int | None = None  # before (removed, or modified when known)
    what: tuple[str, ...] = ()  # for modified: content, mode, owner, mtime, link, kind
    details: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.change, "kind": self.kind, "size": self.size,
                "old_size": self.old_size, "what": list(self.what), **self.details}


def build_changes(database: str, changes: Iterable[Change]) -> None:
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-{CACHE_KIB};"
                                 + SCHEMA)
        connection.execute("BEGIN")
        counts = dict.fromkeys(CHANGE_KINDS, 0)
        batch: list[tuple[bytes, str]] = []
        for change in changes:
            counts[change.change] += 1
            record = change.to_record()
            record["path"] = None
            batch.append((name_bytes(change.path), json.dumps(record)))
            if len(batch) >= 2000:
                connection.executemany("INSERT OR REPLACE INTO changes VALUES (?, ?)", batch)
                batch.clear()
        connection.executemany("INSERT OR REPLACE INTO changes VALUES (?, ?)", batch)
        connection.executemany("INSERT INTO counts VALUES (?, ?)", counts.items())
        connection.execute("COMMIT")
    finally:
        connection.close()


class ChangeList:
    def __init__(self, database: str) -> None:
        self._connection = sqlite3.connect(f"file:{database}?mode=ro&immutable=1", uri=True,
                                           check_same_thread=False)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ChangeList:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def page(self, after: bytes, limit: int) -> dict[str, Any]:
        rows = self._connection.execute("SELECT path, record FROM changes WHERE path > ? ORDER BY path LIMIT ?",
                                        (after, limit + 1)).fetchall()
        counts = dict(self._connection.execute("SELECT change, count FROM counts"))
        shown = rows[:limit]
        return {
            "changes": [{**json.loads(record), "path": name_text(path)} for path, record in shown],
            "total": sum(counts.values()),
            "counts": counts,
            "cursor": shown[-1][0].hex() if len(rows) > limit else None,
        }


def changes_of_diff(diff: Iterable[DiffChange], place_of: Callable[[str], str],
                    old_place_of: Callable[[str], str]) -> Iterator[Change]:
    """borg diff's changes placed on the box; a path only the old snapshot held is placed
    by the old snapshot's roots."""
    for change in diff:
        place = old_place_of(change.path) if change.change == "removed" else place_of(change.path)
        yield Change(place, change.change, change.kind, change.size, change.old_size, change.what, change.details)


def live_changes(index: SnapshotIndex, contents: Any, protected: tuple[str, ...]) -> Iterator[Change]:
    """The snapshot against the files now under its roots, walked through folder descriptors
    opened with O_NOFOLLOW (a folder swapped for a link while walking is not followed)."""
    for place, archive_root in contents.places.items():
        if any(is_within(place, other) and place != other for other in contents.places):
            continue  # inside another root, which walks it
        entry = index.entry(archive_root)
        try:
            info = os.lstat(place)
        except FileNotFoundError:
            if entry is not None:
                yield from _removed(index, place, archive_root, entry)
            continue
        if entry is None:
            yield Change(place, "added", _kind(info.st_mode), size=_size(info))
            continue
        yield from _compared(place, entry, info)
        if stat.S_ISDIR(info.st_mode) and entry.kind == "folder":
            fd = os.open(place, _FOLDER_FLAGS)
            try:
                yield from _walk(index, contents, protected, fd, place, archive_root)
            finally:
                os.close(fd)


def _walk(index: SnapshotIndex, contents: Any, protected: tuple[str, ...], fd: int, place: str,
          archive_path: str) -> Iterator[Change]:
    live = dict(_live_entries(contents, protected, fd, place))
    seen: set[str] = set()
    for entry in _all_children(index, archive_path):
        child, child_archive = f"{place.rstrip('/')}/{entry.name}", f"{archive_path}/{entry.name}"
        info = live.get(entry.name)
        seen.add(entry.name)
        if info is None:
            yield from _removed(index, child, child_archive, entry)
            continue
        yield from _compared(child, entry, info)
        if entry.kind == "folder" and stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(index, contents, protected, fd, entry.name, child, child_archive)
        elif stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(index, contents, protected, fd, entry.name, child, None)
    for name, info in live.items():
        if name in seen:
            continue
        child = f"{place.rstrip('/')}/{name}"
        yield Change(child, "added", _kind(info.st_mode), size=_size(info))
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(index, contents, protected, fd, name, child, None)


def _live_entries(contents: Any, protected: tuple[str, ...], fd: int,
                  place: str) -> Iterator[tuple[str, os.stat_result]]:
    """The entries of the live folder a snapshot would hold: not excluded, not the daemon's
    own files, not sockets (borg does not keep them)."""
    for name in os.listdir(fd):
        child = f"{place.rstrip('/')}/{name}"
        if contents.excluded(child) or any(is_within(child, folder) for folder in protected):
            continue
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISSOCK(info.st_mode):
            yield name, info


def _walk_folder(index: SnapshotIndex, contents: Any, protected: tuple[str, ...], parent_fd: int, name: str,
                 place: str, archive_path: str | None) -> Iterator[Change]:
    try:
        fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
    except OSError:
        return  # gone, or replaced by something that is not a folder
    try:
        if archive_path is None:
            yield from _all_added(contents, protected, fd, place)
        else:
            yield from _walk(index, contents, protected, fd, place, archive_path)
    finally:
        os.close(fd)


def _all_added(contents: Any, protected: tuple[str, ...], fd: int, place: str) -> Iterator[Change]:
    for name, info in _live_entries(contents, protected, fd, place):
        child = f"{place.rstrip('/')}/{name}"
        yield Change(child, "added", _kind(info.st_mode), size=_size(info))
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(None, contents, protected, fd, name, child, None)  # type: ignore[arg-type]


def _all_children(index: SnapshotIndex, archive_path: str) -> Iterator[Entry]:
    after = b""
    while entries := index.children(archive_path, after, 1000):
        yield from entries
        after = name_bytes(entries[-1].name)


def _removed(index: SnapshotIndex, place: str, archive_path: str, entry: Entry) -> Iterator[Change]:
    yield Change(place, "removed", entry.kind, old_size=entry.size)
    if entry.kind == "folder":
        for path, inner in index.walk(archive_path):
            yield Change(place + path[len(archive_path):], "removed", inner.kind, old_size=inner.size)


def _compared(place: str, entry: Entry, info: os.stat_result) -> Iterator[Change]:
    kind = _kind(info.st_mode)
    what: list[str] = []
    if kind != entry.kind:
        what.append("kind")
    else:
        if kind == "file" and (info.st_size != entry.size):
            what.append("content")
        if kind != "folder" and entry.mtime is not None and abs(info.st_mtime_ns / 1e9 - entry.mtime) > 1e-5:
            what.append("mtime")
        if stat.filemode(info.st_mode)[1:] != entry.mode[1:]:
            what.append("mode")
        if (info.st_uid, info.st_gid) != (entry.uid, entry.gid):
            what.append("owner")
    if what:
        yield Change(place, "modified", kind, size=_size(info), old_size=entry.size, what=tuple(what))


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _size(info: os.stat_result) -> int | None:
    return info.st_size if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode) else None
