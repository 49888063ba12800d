"""What one mirror run uploads and deletes, and in which order, so that the bucket is a
repository borg can open at every moment, whenever the run is stopped.

borg opens a repository at its newest index (``index.B``), then replays every segment past it
up to the newest one that ends a transaction. So, once the bucket holds a repository:

- segments past the bucket's index that do not belong there (a stale number, a copy of a
  transaction borg rolled back, anything past the local index) go first, highest first;
- then the new segments that end no transaction, in parallel: borg replays none of them alone;
- then each segment that ends a transaction, one at a time, lowest first: a replay never finds
  a hole below it;
- then the root files (the index last of all, in the same step as its hints and integrity);
- then the segments the new index no longer names (compaction's), lowest first, so that a
  delete tag never goes before the older segment whose object it deletes.

Before the bucket holds a repository (no ``config``), borg cannot open it at all and nothing
needs ordering: segments go up in parallel, and ``config`` comes with the index at the end.

Only segments up to the local index's transaction go up: past it is borg's unfinished work,
whose numbers it reuses after a rollback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backupd.borg.transactions import RepositoryFiles, SegmentFile, index_transaction, segment_number


@dataclass(frozen=True)
class RemoteFiles:
    """The objects under the mirror's prefix: path relative to the prefix -> size."""

    sizes: dict[str, int]

    @property
    def is_repository(self) -> bool:
        return "config" in self.sizes

    @property
    def transaction(self) -> int | None:
        return index_transaction(path for path, size in self.sizes.items() if "/" not in path and size > 0)

    def segments(self) -> dict[int, str]:
        found = {}
        for path in self.sizes:
            number = segment_number(path)
            if number is not None:
                found[number] = path
        return found


@dataclass(frozen=True)
class UploadPlan:
    removed_first: tuple[str, ...]
    parallel: tuple[str, ...]
    in_order: tuple[str, ...]
    removed_after: tuple[str, ...]

    @property
    def segments_uploaded(self) -> int:
        return sum(1 for path in (*self.parallel, *self.in_order) if segment_number(path) is not None)


class BucketAhead(Exception):
    """The bucket's index names a later transaction than the repository's: another writer's."""

    def __init__(self, bucket_transaction: int, local_transaction: int | None) -> None:
        super().__init__(bucket_transaction, local_transaction)
        self.bucket_transaction = bucket_transaction
        self.local_transaction = local_transaction


def leftovers_to_verify(local: RepositoryFiles, remote: RemoteFiles) -> tuple[str, ...]:
    """Segments past the bucket's index that look like the local ones (same number and size):
    their content is compared before they are kept, as a rolled-back number may hold anything."""
    past = _past_index(remote)
    committed = _up_to_index(local)
    return tuple(sorted(
        (path for number, path in remote.segments().items()
         if number > past and number in committed and remote.sizes[path] == committed[number].size),
        key=_segment_order,
    ))


def plan_upload(local: RepositoryFiles, remote: RemoteFiles, verified: Iterable[str] = (),
                compared: Iterable[str] = ()) -> UploadPlan:
    """The plan of one run. ``verified``: leftovers whose content matched the local segment;
    ``compared``: local files to compare by content and upload when they differ (written since
    the last mirror began, or found damaged)."""
    if local.transaction is None:
        return UploadPlan((), (), (), ())
    if remote.transaction is not None and remote.transaction > local.transaction:
        raise BucketAhead(remote.transaction, local.transaction)
    matching = frozenset(verified)
    recheck = frozenset(compared)
    committed = _up_to_index(local)
    remote_segments = remote.segments()
    past = _past_index(remote)

    def kept(number: int) -> bool:
        path = remote_segments.get(number)
        return path is not None and path in matching and number in committed \
            and remote.sizes[path] == committed[number].size

    missing_past = sorted(number for number in committed if number > past and not kept(number))
    first_gap = missing_past[0] if missing_past else None
    ordered = remote.is_repository
    removed_first = sorted(
        (number for number in remote_segments if number > past and (
            not kept(number) or (ordered and first_gap is not None and number > first_gap
                                 and committed[number].committed))),
        reverse=True,
    )
    repairs = [segment for number, segment in committed.items() if number <= past and (
        number not in remote_segments or remote.sizes[remote_segments[number]] != segment.size
        or segment.path in recheck)]
    new = [committed[number] for number in sorted(committed)
           if number > past and (not kept(number) or number in removed_first)]
    parallel = [*_root_files_to_send(local, remote, recheck), *(segment.path for segment in repairs)]
    in_order: list[str] = []
    for segment in new:
        (in_order if ordered and segment.committed else parallel).append(segment.path)
    removed_after = sorted((number for number in remote_segments
                            if number <= local.transaction and number not in committed))
    return UploadPlan(
        removed_first=tuple(remote_segments[number] for number in removed_first),
        parallel=tuple(parallel),
        in_order=tuple(in_order),
        removed_after=tuple(remote_segments[number] for number in removed_after),
    )


def _root_files_to_send(local: RepositoryFiles, remote: RemoteFiles, recheck: frozenset[str]) -> list[str]:
    """config, nonce and the like before any segment that uses them (a new box that restores
    the bucket reserves its encryption nonces past the bucket's ``nonce``). Before the bucket
    is a repository, ``config`` waits for the index: it is what makes the prefix one."""
    sent = []
    for name in local.root_files:
        if name.startswith(("index.", "hints.", "integrity.")) or (name == "config" and not remote.is_repository):
            continue
        if name not in remote.sizes or name in recheck:
            sent.append(name)
    return sent


def _up_to_index(local: RepositoryFiles) -> dict[int, SegmentFile]:
    return {segment.number: segment for segment in local.committed_segments()}


def _past_index(remote: RemoteFiles) -> int:
    transaction = remote.transaction
    return -1 if transaction is None else transaction


def _segment_order(path: str) -> int:
    number = segment_number(path)
    return -1 if number is None else number
