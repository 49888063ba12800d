"""Pages of the lists that grow without bound (snapshots, jobs): each answer stays well inside
the message limit, and a cursor says where the next page starts."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from backupctl.protocol import MAX_MESSAGE_SIZE
from backupd.errors import invalid_params
from backupd.params import Param
from backupd.state import ArchiveEntry

PAGE_PARAMS = (Param("limit", int), Param("cursor", str))
MAX_SNAPSHOTS_LIMIT = 1000
# What one page's records may take packed: the rest of the message is the envelope.
MAX_PAGE_BYTES = MAX_MESSAGE_SIZE // 2
# A snapshot's record packed, beside its name and id.
_SNAPSHOT_RECORD_BYTES = 32


@dataclass(frozen=True)
class SnapshotPage:
    records: list[dict[str, Any]]
    total: int
    cursor: str | None

    def to_record(self) -> dict[str, Any]:
        return {"snapshots": self.records, "total": self.total, "cursor": self.cursor}


def snapshot_record(archive: ArchiveEntry) -> dict[str, Any]:
    return {"name": archive.name, "id": archive.id, "time": archive.time}


def all_snapshots(by_age: tuple[ArchiveEntry, ...]) -> list[dict[str, Any]]:
    """Every snapshot, newest first, when they fit in one answer."""
    size = sum(len(archive.name) + len(archive.id) + _SNAPSHOT_RECORD_BYTES for archive in by_age)
    if size > MAX_PAGE_BYTES:
        raise invalid_params("cursor", f"the {len(by_age)} snapshots do not fit in one answer: "
                                       "ask for pages with limit and cursor")
    return [snapshot_record(archive) for archive in reversed(by_age)]


def snapshot_page(by_age: tuple[ArchiveEntry, ...], limit: int, cursor: str) -> SnapshotPage:
    """The newest ``limit`` snapshots older than the cursor's ("" for the newest)."""
    if not 1 <= limit <= MAX_SNAPSHOTS_LIMIT:
        raise invalid_params("limit", f"limit must be between 1 and {MAX_SNAPSHOTS_LIMIT}")
    end = bisect_left(by_age, _cursor_order(cursor), key=lambda archive: archive.age_order) if cursor else len(by_age)
    start = max(0, end - limit)
    shown = by_age[start:end]
    return SnapshotPage([snapshot_record(archive) for archive in reversed(shown)], len(by_age),
                        _cursor_of(shown[0]) if start > 0 and shown else None)


def _cursor_of(archive: ArchiveEntry) -> str:
    return f"{archive.time!r} {archive.name}"


def _cursor_order(cursor: str) -> tuple[float, str]:
    time, _, name = cursor.partition(" ")
    try:
        return float(time), name
    except ValueError:
        raise invalid_params("cursor", "cursor must be one a previous answer gave") from None
