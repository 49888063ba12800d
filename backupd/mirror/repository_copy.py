"""The repository a bucket holds under a prefix, read from rclone's listing of it: the files
of its newest committed transaction, which a download fetches and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass

from backupd.borg.transactions import TOP_FILES, segment_number, transaction_file

# borg's lock is the box's own, and the daemon's markers are not the repository's.
_LEFT_OUT_PREFIXES = ("lock.", ".backupd-")


class ListingUnreadable(ValueError):
    """rclone's listing was not the JSON array of files it prints."""


@dataclass(frozen=True)
class BucketFile:
    path: str  # relative to the listed folder, "/" between names
    size: int


@dataclass(frozen=True)
class RepositoryCopy:
    """One committed state of a repository in a bucket: the top files (config, README, nonce),
    the newest index with its hints and integrity, and the segments up to that transaction
    (segments past it belong to a transaction whose index is not there yet)."""

    transaction: int | None
    metadata: tuple[BucketFile, ...]
    segments: tuple[BucketFile, ...]

    @property
    def has_config(self) -> bool:
        return any(file.path == "config" for file in self.metadata)

    @property
    def index(self) -> str | None:
        return f"index.{self.transaction}" if self.transaction is not None else None

    def paths(self) -> frozenset[str]:
        return frozenset(file.path for file in (*self.metadata, *self.segments))


def parse_listing(stdout: str) -> tuple[BucketFile, ...]:
    """The files of `rclone lsjson --files-only`."""
    try:
        entries = json.loads(stdout)
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise ValueError("not a list of files")
        files = tuple(BucketFile(str(entry["Path"]), int(entry["Size"])) for entry in entries
                      if not entry.get("IsDir"))
    except (ValueError, TypeError, KeyError) as error:
        raise ListingUnreadable(f"rclone's listing could not be read: {error}") from None
    return files


def is_left_out(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(_LEFT_OUT_PREFIXES)


def repository_copy(files: tuple[BucketFile, ...]) -> RepositoryCopy:
    """The newest committed state among the files listed under a prefix."""
    kept = [file for file in files if not is_left_out(file.path)]
    newest = max(_index_numbers(kept), default=None)
    metadata = [file for file in kept if file.path in TOP_FILES or _of_transaction(file.path, newest)]
    segments = [file for file in kept if _segment_up_to(file.path, newest)]
    return RepositoryCopy(newest, _sorted(metadata), _sorted(segments))


def _index_numbers(files: list[BucketFile]) -> list[int]:
    found = [transaction_file(file.path) for file in files]
    return [number for kind, number in filter(None, found) if kind == "index"]


def _of_transaction(path: str, transaction: int | None) -> bool:
    found = transaction_file(path)
    return found is not None and found[1] == transaction


def _segment_up_to(path: str, transaction: int | None) -> bool:
    number = segment_number(path)
    return number is not None and (transaction is None or number <= transaction)


def folders_with(files: tuple[BucketFile, ...], name: str) -> list[str]:
    """The folders (below the listed one) that hold a file of this name, sorted."""
    return sorted(file.path.removesuffix(f"/{name}") for file in files if file.path.endswith(f"/{name}"))


def _sorted(files: list[BucketFile]) -> tuple[BucketFile, ...]:
    return tuple(sorted(files, key=lambda file: file.path))
