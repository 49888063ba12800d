"""What is in the page cache when a timed run starts: the same for both sides of a pair.

borg drops the files it has read from the page cache (POSIX_FADV_DONTNEED), so without
this the first run after the data was written reads it from memory and the next one from
disk. A snapshot starts with the data in the cache, as the bench wrote it; a restore starts
with the repository out of it, as `borg create` leaves it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

READ_SIZE = 1024 * 1024


def sync_and_warm(folders: Iterable[Path]) -> None:
    """Write everything dirty out, then read the folders' files into the page cache."""
    os.sync()
    _each_file(folders, _read_whole_file)


def sync_and_evict(folders: Iterable[Path]) -> None:
    """Write everything dirty out, then drop the folders' files from the page cache."""
    os.sync()
    _each_file(folders, _drop_from_cache)


def _each_file(folders: Iterable[Path], action: Callable[[int], None]) -> None:
    for folder in folders:
        for directory, _, files in os.walk(folder):
            for name in files:
                try:
                    fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    action(fd)
                finally:
                    os.close(fd)


def _read_whole_file(fd: int) -> None:
    while os.read(fd, READ_SIZE):
        pass


def _drop_from_cache(fd: int) -> None:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
