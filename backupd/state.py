"""What the daemon knows about its repository, kept in memory and saved as state.json and its journal."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Self

from backupctl import records


class FlatRecord:
    """A record whose fields are all plain values, read back from its saved map."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{name: record[name] for name in fields if name in record})


@dataclass(frozen=True)
class SnapshotSummary(FlatRecord):
    name: str
    time: float
    duration: float
    files: int
    original_size: int
    deduplicated_size: int


@dataclass(frozen=True)
class ArchiveEntry(FlatRecord):
    name: str
    id: str
    time: float
    # Known for the snapshots this daemon took; a restore of the others asks borg.
    sources: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    files: int | None = None
    original_size: int | None = None

    @property
    def age_order(self) -> tuple[float, str]:
        """Older first. Times are to the second: two snapshots of one second go by name."""
        return (self.time, self.name)


@dataclass(frozen=True)
class Problem(FlatRecord):
    code: str
    message: str
    since: float
    operation: str

    def record(self) -> records.Problem:
        """The problem as the overview shows it: without the operation that met it."""
        return records.Problem(code=self.code, message=self.message, since=self.since)


@dataclass(frozen=True)
class CheckRecord(FlatRecord):
    time: float
    ok: bool
    message: str


@dataclass(frozen=True)
class RepositoryState:
    archives: tuple[ArchiveEntry, ...] = ()  # oldest first: ArchivesByAge, or empty
    last_snapshot: SnapshotSummary | None = None
    total_size: int = 0
    file_count: int = 0
    problem: Problem | None = None
    configured_at: float | None = None
    last_attempt: float | None = None
    last_compact: float | None = None
    last_check: CheckRecord | None = None
    host_key: str | None = None
    # This box's checkpoints of interrupted snapshots may be in the repository.
    checkpoints_left: bool = False

    @property
    def snapshot_count(self) -> int:
        return len(self.archives)

    def with_archive(self, archive: ArchiveEntry, **changes: Any) -> RepositoryState:
        """This state with one more archive, in its place by age: a new snapshot goes last
        without sorting what is known."""
        archives = list(self.archives)
        bisect.insort_right(archives, archive, key=_age)
        return replace(self, archives=ArchivesByAge(archives), **changes)

    def without_archives(self, names: frozenset[str], **changes: Any) -> RepositoryState:
        """This state without the archives of those names, the others in their order."""
        kept = ArchivesByAge(archive for archive in self.archives if archive.name not in names)
        return replace(self, archives=kept, **changes)

    @property
    def last_success(self) -> float | None:
        return self.last_snapshot.time if self.last_snapshot else None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RepositoryState:
        last = record.get("last_snapshot")
        problem = record.get("problem")
        last_check = record.get("last_check")
        return cls(
            archives=in_age_order(ArchiveEntry.from_record(entry) for entry in record.get("archives", ())),
            last_snapshot=SnapshotSummary.from_record(last) if last else None,
            total_size=record.get("total_size", 0),
            file_count=record.get("file_count", 0),
            problem=Problem.from_record(problem) if problem else None,
            configured_at=record.get("configured_at"),
            last_attempt=record.get("last_attempt"),
            last_compact=record.get("last_compact"),
            last_check=CheckRecord.from_record(last_check) if last_check else None,
            host_key=record.get("host_key"),
            checkpoints_left=bool(record.get("checkpoints_left", False)),
        )


class ArchivesByAge(tuple[ArchiveEntry, ...]):
    """Archives oldest first. Made only by in_age_order or from a list already in that order,
    so a list of this type is adopted as it is, without sorting it again."""

    __slots__ = ()


def in_age_order(archives: Iterable[ArchiveEntry]) -> ArchivesByAge:
    """Archives oldest first, as a repository state keeps them."""
    if isinstance(archives, ArchivesByAge):
        return archives
    return ArchivesByAge(sorted(archives, key=_age))


def reusing_known(archives: Iterable[ArchiveEntry], known: Iterable[ArchiveEntry]) -> Iterator[ArchiveEntry]:
    """The archives, each one already known (same id and name) given as the known entry: what
    the daemon recorded of its own snapshots stays, and a list read again shares its entries
    with the one it replaces instead of freeing and rebuilding thousands on the event loop."""
    by_id = {entry.id: entry for entry in known}
    for archive in archives:
        entry = by_id.get(archive.id)
        yield entry if entry is not None and entry.name == archive.name else archive


def _age(archive: ArchiveEntry) -> tuple[float, str]:
    return archive.age_order
