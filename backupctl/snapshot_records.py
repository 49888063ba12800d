"""The records of looking at snapshots (docs/api.md, "snapshots", "browse", "versions",
"compare"): a snapshot of the list, a folder's page, a path's versions, a page of changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from backupctl.records import WirePath
from backupctl.wire_record import WireRecord, sometimes, wire_key

__all__ = ["Change", "ChangeCounts", "ChangesPage", "FolderEntry", "FolderPage", "PathVersions", "SnapshotListed", "Version"]


@dataclass(frozen=True)
class SnapshotListed(WireRecord):
    """One snapshot of `snapshots`."""

    name: str
    id: str
    time: float
    sources: list[WirePath] | None = sometimes()


@dataclass(frozen=True)
class FolderEntry(WireRecord):
    """What a folder of a snapshot holds; `name` and `target` are None for a reader. A folder
    above the snapshot's sources has an empty mode."""

    name: WirePath | None
    kind: str  # file, folder, link or other
    size: int | None
    mode: str
    user: str | None
    group: str | None
    uid: int | None
    gid: int | None
    mtime: float | None
    target: WirePath | None


@dataclass(frozen=True)
class FolderPage(WireRecord):
    """One page of `browse`: `path` is None for a reader."""

    snapshot: str
    path: WirePath | None
    kind: str
    entries: list[FolderEntry]
    total: int
    cursor: str | None


@dataclass(frozen=True)
class Version(WireRecord):
    snapshot: str
    time: float
    kind: str
    size: int | None
    mtime: float | None
    mode: str


@dataclass(frozen=True)
class PathVersions(WireRecord):
    """The answer of `versions`: the snapshots that hold the path, newest first."""

    path: WirePath
    versions: list[Version]


@dataclass(frozen=True)
class Change(WireRecord):
    """One change of `compare`: `path` is None for a reader."""

    path: WirePath | None
    change: str  # added, removed or modified
    kind: str | None
    size: int | None
    old_size: int | None
    what: list[str]
    added_bytes: int | None = sometimes()  # a file modified between two snapshots, as borg counts it
    removed_bytes: int | None = sometimes()


@dataclass(frozen=True)
class ChangeCounts(WireRecord):
    added: int
    removed: int
    modified: int


@dataclass(frozen=True)
class ChangesPage(WireRecord):
    """One page of `compare`: `to` is None against the files now."""

    from_snapshot: str = field(metadata=wire_key("from"))
    to: str | None
    changes: list[Change]
    total: int
    counts: ChangeCounts
    cursor: str | None
