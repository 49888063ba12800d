"""What a snapshot holds, as a restore and browsing take it: where each of its roots goes on
the box, its totals, and the exclude patterns it was taken with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from backupd.borg.patterns import exclude_matcher
from backupd.paths import is_within


@dataclass(frozen=True)
class SnapshotContents:
    places: dict[str, str]  # where each root of the snapshot goes on the box -> its archive path
    files: int
    original_size: int
    exclude: tuple[str, ...] = ()  # the patterns the snapshot was taken with

    def excluded(self, place: str) -> bool:
        """Whether the snapshot's exclude patterns match a place inside its roots."""
        return bool(self.exclude) and self._matcher(self.archive_path(place))

    @cached_property
    def _matcher(self) -> Callable[[str], bool]:
        return exclude_matcher(self.exclude)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.places)

    def archive_path(self, place: str) -> str:
        """The archive path of a place on the box inside one of the snapshot's roots."""
        for root, archive_root in self.places.items():
            if is_within(place, root):
                return archive_root + place[len(root):]
        raise ValueError(f"{place} is not in the snapshot")

    def place_of(self, archive_path: str) -> str:
        """Where an archive path goes on the box."""
        for root, archive_root in self.places.items():
            if is_within(archive_path, archive_root):
                return root + archive_path[len(archive_root):]
        return "/" + archive_path
