"""Whether the sources fit beside a local repository: their size against the free space of
the repository's file system, for the warning of `configure`."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from backupd.restore.nofollow import deepest_existing
from backupd.restore.space import free_bytes

# Counting stops here on a very large tree; what was counted by then is compared.
COUNT_SECONDS = 5.0


@dataclass(frozen=True)
class SourceRoom:
    source_bytes: int  # at least; all of it when complete
    free: int
    complete: bool

    @property
    def fits(self) -> bool:
        return self.source_bytes <= self.free


def room_for_sources(sources: Sequence[str], repository: str, seconds: float = COUNT_SECONDS) -> SourceRoom:
    """Bytes in the sources (files as they are, before compression and deduplication) and the
    bytes free where the repository is. Blocking: for a worker thread."""
    deadline = time.monotonic() + seconds
    total = 0
    for source in sources:
        for root, _, files in os.walk(source):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    continue
            if time.monotonic() > deadline:
                return SourceRoom(total, free_bytes(deepest_existing(repository)), complete=False)
        if not os.path.isdir(source):
            try:
                total += os.lstat(source).st_size
            except OSError:
                continue
    return SourceRoom(total, free_bytes(deepest_existing(repository)), complete=True)


def room_warning(room: SourceRoom) -> str | None:
    if room.fits:
        return None
    at_least = "" if room.complete else "at least "
    return (f"The sources hold {at_least}{_gib(room.source_bytes)} and the repository's disk has {_gib(room.free)} "
            "free: the first snapshot may not fit (compression and deduplication may make it smaller)")


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
