"""The files of a borg 1.x repository as they lie in its folder (or in a bucket that mirrors
it), read without running borg: its commits, which segment ends one, what the index's header
says."""

from __future__ import annotations

import configparser
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from backupd.ssh import remote_location

# borg writes these anew, with the new transaction's number, at every commit.
_TRANSACTION_FILE = re.compile(r"(index|hints|integrity)\.(\d+)")


def repository_marker(location: str) -> tuple[str, ...] | None:
    """What changes whenever borg commits to a local repository: the names of its transaction
    files. None for a remote repository, or a local one that cannot be listed."""
    if remote_location(location) is not None:
        return None
    try:
        names = os.listdir(location.removeprefix("file://"))
    except OSError:
        return None
    return tuple(sorted(name for name in names if _TRANSACTION_FILE.fullmatch(name)))


# The last 9 bytes of a segment that ends a transaction: crc32, size 9, tag COMMIT (2).
_COMMIT_BODY = struct.pack("<IB", 9, 2)
COMMIT_TAG = struct.pack("<I", zlib.crc32(_COMMIT_BODY) & 0xFFFFFFFF) + _COMMIT_BODY
_NUMBER = re.compile(r"0|[1-9]\d{0,18}")
# Root files borg writes besides the transaction files; a lock and a half-written file stay on the box.
TOP_FILES = frozenset({"config", "nonce", "README", "transactions"})
INDEX_MAGIC = "BORG_IDX"
# The magic, then the number of entries as a little-endian int32.
INDEX_COUNT_END = len(INDEX_MAGIC) + 4


@dataclass(frozen=True)
class SegmentFile:
    """One data segment: its path relative to the repository (``data/<dir>/<number>``)."""

    number: int
    path: str
    size: int
    mtime: float
    committed: bool


@dataclass(frozen=True)
class RepositoryFiles:
    """A local repository's files as borg left them: the transaction its newest index names,
    the root files that belong to it, and every data segment."""

    transaction: int | None
    root_files: tuple[str, ...]
    segments: dict[int, SegmentFile]

    def committed_segments(self) -> tuple[SegmentFile, ...]:
        """The segments up to the index's transaction: what borg itself will read."""
        if self.transaction is None:
            return ()
        return tuple(self.segments[number] for number in sorted(self.segments) if number <= self.transaction)


def segment_number(path: str) -> int | None:
    """The number of a segment from its path relative to the repository, or None for any other file."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != "data" or not _NUMBER.fullmatch(parts[1]) or not _NUMBER.fullmatch(parts[2]):
        return None
    return int(parts[2])


def transaction_file(path: str) -> tuple[str, int] | None:
    """("index", 9) for index.9 (also hints and integrity); None for any other path."""
    match = _TRANSACTION_FILE.fullmatch(path)
    return (match[1], int(match[2])) if match else None


def index_transaction(names: Iterable[str]) -> int | None:
    """The transaction borg opens a repository at: the highest ``index.N`` among the root names."""
    numbers = [int(name[6:]) for name in names if name.startswith("index.") and _NUMBER.fullmatch(name[6:])]
    return max(numbers, default=None)


def is_transaction_file(name: str, transaction: int | None) -> bool:
    """index, hints and integrity files, of the given transaction or (None) of any."""
    if not _TRANSACTION_FILE.fullmatch(name):
        return False
    return transaction is None or name.endswith(f".{transaction}")


def belongs_at_root(name: str) -> bool:
    """A root file borg reads: never its lock, a temporary file or a stranger's."""
    return name in TOP_FILES or bool(_TRANSACTION_FILE.fullmatch(name))


def read_repository_files(folder: str, read_tails: bool = True) -> RepositoryFiles:
    """The repository's files, committed or not, with whether each segment ends a transaction;
    blocking, for a worker thread. Only the index's transaction counts: segments past it are
    borg's unfinished work, which it deletes and writes again with the same numbers. Without
    read_tails no segment is opened, and none is said to end a transaction."""
    names = os.listdir(folder)
    transaction = index_transaction(name for name in names if _nonempty(os.path.join(folder, name)))
    root = tuple(sorted(name for name in names if belongs_at_root(name)
                        and (not _TRANSACTION_FILE.fullmatch(name) or name.endswith(f".{transaction}"))))
    segments: dict[int, SegmentFile] = {}
    data = os.path.join(folder, "data")
    for directory in _numbered_entries(data):
        for name in _numbered_entries(os.path.join(data, directory)):
            relative = f"data/{directory}/{name}"
            try:
                info = os.lstat(os.path.join(folder, relative))
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            number = int(name)
            committed = read_tails and transaction is not None and number <= transaction and _ends_a_transaction(
                os.path.join(folder, relative), info.st_size)
            segments[number] = SegmentFile(number, relative, info.st_size, info.st_mtime, committed)
    return RepositoryFiles(transaction, root, segments)


def _nonempty(path: str) -> bool:
    try:
        return os.lstat(path).st_size > 0
    except OSError:
        return False


def _numbered_entries(folder: str) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if _NUMBER.fullmatch(name)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _ends_a_transaction(path: str, size: int) -> bool:
    if size < len(COMMIT_TAG):
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.pread(descriptor, len(COMMIT_TAG), size - len(COMMIT_TAG)) == COMMIT_TAG
    finally:
        os.close(descriptor)


def is_repository_config(text: str) -> bool:
    """Whether a config file's text is a borg repository's: it has a [repository] section."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return parser.has_section("repository")


def index_entry_count(start: str) -> int | None:
    """The number of objects an index names, from its first INDEX_COUNT_END bytes decoded as
    UTF-8 with replacement. A count with a byte that is not ASCII cannot be read back from such
    text: None then, as for anything that is not an index."""
    if len(start) < INDEX_COUNT_END or not start.startswith(INDEX_MAGIC):
        return None
    count = start[len(INDEX_MAGIC):INDEX_COUNT_END]
    if not count.isascii():
        return None
    return int.from_bytes(count.encode("ascii"), "little")
