"""One snapshot's listing in an SQLite file: each item under its folder, sorted by name.

Names are stored as their bytes, so a folder sorts the way the kernel's bytes do and a name
that is not UTF-8 is kept exactly. A finished index is never written again: it is opened
read-only and immutable, which needs no lock and no journal.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from backupd.borg.tree_listing import TreeItem

SCHEMA = """
CREATE TABLE entries (
    parent BLOB NOT NULL, name BLOB NOT NULL, kind TEXT NOT NULL, mode TEXT NOT NULL,
    uid INTEGER, gid INTEGER, user TEXT, grp TEXT, size INTEGER, mtime REAL, target BLOB,
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "name, kind, mode, uid, gid, user, grp, size, mtime, target"
BATCH = 2000
CACHE_KIB = 2048  # SQLite's page cache per open index


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    mode: str
    uid: int
    gid: int
    user: str
    group: str
    size: int | None
    mtime: float | None
    target: str | None

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "size": self.size, "mode": self.mode,
                "user": self.user, "group": self.group, "uid": self.uid, "gid": self.gid,
                "mtime": self.mtime, "target": self.target}


def name_bytes(text: str) -> bytes:
    """The bytes a name stands for (its undecodable bytes held as surrogates)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def name_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def split(path: str) -> tuple[str, str]:
    """An archive path's folder and name: "a/b/c" -> ("a/b", "c"), "a" -> ("", "a")."""
    parent, _, name = path.rpartition("/")
    return parent, name


def build(database: str, items: Iterable[TreeItem], facts: dict[str, Any]) -> dict[str, Any]:
    """Write the items into a new index at database; returns the facts with the item count
    and the archive roots (the items whose folder is not an item), in archive order."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                                 f"PRAGMA cache_size=-{CACHE_KIB};" + SCHEMA)
        connection.execute("BEGIN")
        count, roots, hard_links = 0, RootFinder(), []
        batch: list[tuple[Any, ...]] = []
        for item in items:
            parent, name = split(item.path)
            roots.add(item.path)
            if item.hard_link and item.target:
                hard_links.append((parent, name, item.target))
            batch.append((name_bytes(parent), name_bytes(name), item.kind, item.mode, item.uid, item.gid,
                          item.user, item.group, item.size, item.mtime,
                          name_bytes(item.target) if item.target is not None else None))
            count += 1
            if len(batch) >= BATCH:
                _insert(connection, batch)
        _insert(connection, batch)
        _size_hard_links(connection, hard_links)
        facts = {**facts, "items": count, "roots": roots.roots}
        connection.executemany("INSERT INTO facts VALUES (?, ?)",
                               [(key, json.dumps(value)) for key, value in facts.items()])
        connection.execute("COMMIT")
        return facts
    finally:
        connection.close()


def _insert(connection: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    connection.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    batch.clear()


def _size_hard_links(connection: sqlite3.Connection, hard_links: list[tuple[str, str, str]]) -> None:
    """borg lists a hard link's later paths with size 0: they take the size of the first."""
    for parent, name, first in hard_links:
        first_parent, first_name = split(first)
        connection.execute(
            "UPDATE entries SET size = (SELECT size FROM entries WHERE parent = ? AND name = ?), target = NULL"
            " WHERE parent = ? AND name = ?",
            (name_bytes(first_parent), name_bytes(first_name), name_bytes(parent), name_bytes(name)))


class RootFinder:
    """The archive paths no earlier path holds; borg lists a folder before what it holds."""

    def __init__(self) -> None:
        self.roots: list[str] = []
        self._last_root: str | None = None

    def add(self, path: str) -> None:
        last = self._last_root
        if last is not None and (path == last or path.startswith(last + "/")):
            return
        if any(path == root or path.startswith(root + "/") for root in self.roots):
            return
        self.roots.append(path)
        self._last_root = path


class SnapshotIndex:
    """A finished index, open for reading."""

    def __init__(self, database: str) -> None:
        self._connection = sqlite3.connect(f"file:{database}?mode=ro&immutable=1", uri=True,
                                           check_same_thread=False)
        self._connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.facts = {key: json.loads(value) for key, value in self._connection.execute("SELECT key, value FROM facts")}

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SnapshotIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def entry(self, archive_path: str) -> Entry | None:
        parent, name = split(archive_path)
        row = self._connection.execute(f"SELECT {_COLUMNS} FROM entries WHERE parent = ? AND name = ?",
                                       (name_bytes(parent), name_bytes(name))).fetchone()
        return _entry(row) if row else None

    def children(self, folder: str, after: bytes = b"", limit: int = 1000) -> list[Entry]:
        rows = self._connection.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE parent = ? AND name > ? ORDER BY name LIMIT ?",
            (name_bytes(folder), after, limit))
        return [_entry(row) for row in rows]

    def count(self, folder: str) -> int:
        count: int = self._connection.execute("SELECT count(*) FROM entries WHERE parent = ?",
                                              (name_bytes(folder),)).fetchone()[0]
        return count

    def file_bytes(self, archive_path: str) -> int:
        """The bytes of the files at archive_path and below it."""
        parent, name = split(archive_path)
        below = name_bytes(archive_path)
        total: int = self._connection.execute(
            "SELECT coalesce(sum(size), 0) FROM entries WHERE kind = 'file' AND"
            " ((parent = ? AND name = ?) OR parent = ? OR (parent >= ? AND parent < ?))",
            (name_bytes(parent), name_bytes(name), below, below + b"/", below + b"0")).fetchone()[0]
        return total

    def walk(self, folder: str) -> Iterator[tuple[str, Entry]]:
        """Every entry below folder, as (archive path, entry), each folder before what it holds."""
        rows = self._connection.execute(f"SELECT {_COLUMNS} FROM entries WHERE parent = ? ORDER BY name",
                                        (name_bytes(folder),))
        for entry in map(_entry, rows):
            path = f"{folder}/{entry.name}" if folder else entry.name
            yield path, entry
            if entry.kind == "folder":
                yield from self.walk(path)


def _entry(row: tuple[Any, ...]) -> Entry:
    name, kind, mode, uid, gid, user, group, size, mtime, target = row
    return Entry(name_text(name), kind, mode, uid, gid, user, group, size, mtime,
                 name_text(target) if target is not None else None)


def remove(database: str) -> None:
    try:
        os.unlink(database)
    except FileNotFoundError:
        pass
