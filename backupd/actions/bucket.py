"""The mirror's bucket: one rclone command against it as a typed error, the check of a bucket
before it is used, which borg repository a prefix holds and taking one over, and a job's
progress across rclone's steps."""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.parts import MirrorParts
from backupd.borg.transactions import INDEX_COUNT_END, index_entry_count, is_repository_config, read_repository_files
from backupd.config import BackupConfig
from backupd.errors import invalid_params
from backupd.jobs import ReportProgress, job_log
from backupd.mirror import rclone
from backupd.mirror.config import MIRROR_PARAMS, MirrorConfig
from backupd.mirror.errors import RcloneFailed, mirror_error
from backupd.mirror.repository_copy import (
    BucketFile,
    ListingUnreadable,
    folders_with,
    parse_listing,
    repository_copy,
)
from backupd.params import check_params
from backupd.progress import progress_with
from backupd.ssh import remote_location

log = logging.getLogger(__name__)

CHECK_MARKER = ".backupd-write-check"
# The prefixes an error names as holding a repository: how deep the bucket is searched, how many are named.
SEARCH_DEPTH = 3
MOST_PREFIXES_NAMED = 20
# configure's mirror option that confirms what take_over deletes.
REPLACE_COUNT_OPTION = "mirror.replace_object_count"


def mirror_params(params: dict[str, Any]) -> dict[str, Any]:
    """The options of a mirror given inside another call's params, with their names as `mirror.x`."""
    try:
        return check_params(params, MIRROR_PARAMS)
    except RpcError as error:
        param = error.data.get("param")
        raise invalid_params(f"mirror.{param}", error.message) from None


def require_local(config: BackupConfig) -> str:
    if remote_location(config.repository) is not None:
        raise invalid_params("repository", "A mirror copies a repository kept on this box; "
                             f"{config.repository} is on a server")
    return config.repository.removeprefix("file://")


def require_mirror(parts: MirrorParts) -> MirrorConfig:
    mirror = parts.mirroring.current
    if mirror is None:
        raise RpcError(ErrorCode.NOT_CONFIGURED, "No off-site mirror is configured: call configure_mirror first",
                       {"param": "mirror"})
    return mirror


async def run(parts: MirrorParts, mirror: MirrorConfig, command: rclone.RcloneCommand,
              on_stats: Callable[[rclone.TransferStats], None] | None = None,
              listing_bucket: bool = False) -> rclone.RcloneResult:
    """One rclone command against the mirror's bucket; its failure as a typed error. The log of
    the job that runs it says which rclone command ran, and rclone's errors."""
    write_log = job_log()
    if write_log is not None:
        write_log("INFO", f"running rclone {command.args[0]}")
    try:
        settings = parts.repository.settings()
        return await rclone.run_rclone(command, mirror.rclone_environment(), parts.secrets() + mirror.secrets(),
                                       upload_limit_kib=settings.upload_limit, on_stats=on_stats,
                                       stall_seconds=settings.mirror_stall_seconds)
    except RcloneFailed as failure:
        log_failure(failure)
        raise mirror_error(failure, mirror.location(), listing_bucket) from None


def log_step(message: str, level: str = "INFO") -> None:
    """A line in the log of the job that runs this step."""
    write_log = job_log()
    if write_log is not None:
        write_log(level, message)


def log_failure(failure: RcloneFailed) -> None:
    """rclone's errors into the log of the job that ran it."""
    write_log = job_log()
    if write_log is not None:
        for message in failure.errors:
            write_log("ERROR", f"rclone: {message}")


async def check_bucket(parts: MirrorParts, mirror: MirrorConfig) -> str | None:
    """Check that the keys may do what mirroring needs: read the bucket and write under the
    prefix. Returns the id of the borg repository already under the prefix, if any."""
    await check_bucket_readable(parts, mirror)
    await check_prefix_writable(parts, mirror)
    return await remote_repository_id(parts, mirror)


async def check_bucket_readable(parts: MirrorParts, mirror: MirrorConfig) -> None:
    """List the bucket's top: the bucket exists and the keys may read it."""
    await run(parts, mirror, rclone.list_folder(mirror.bucket_root), listing_bucket=True)


async def check_prefix_writable(parts: MirrorParts, mirror: MirrorConfig) -> None:
    """Write and delete a small marker under the prefix: the keys may write there."""
    marker = f"{mirror.remote}/{CHECK_MARKER}"
    await run(parts, mirror, rclone.touch(marker))
    await run(parts, mirror, rclone.delete_file(marker))


async def remote_repository_id(parts: MirrorParts, mirror: MirrorConfig) -> str | None:
    listing = await run(parts, mirror, rclone.list_folder(mirror.remote))
    if '"Name":"config"' not in listing.stdout.replace(" ", ""):
        return None
    return await repository_id_in_config(parts, mirror)


async def repository_id_in_config(parts: MirrorParts, mirror: MirrorConfig) -> str | None:
    text = (await run(parts, mirror, rclone.read_file(f"{mirror.remote}/config"))).stdout
    return repository_id(text)


async def list_prefix(parts: MirrorParts, mirror: MirrorConfig) -> tuple[BucketFile, ...]:
    """Every file under the prefix, with its size."""
    listing = await run(parts, mirror, rclone.list_files(mirror.remote))
    try:
        return parse_listing(listing.stdout)
    except ListingUnreadable as error:
        raise RpcError(ErrorCode.MIRROR_FAILED, f"Listing {mirror.location()} failed: {error}") from None


async def repositories_in_bucket(parts: MirrorParts, mirror: MirrorConfig) -> list[str]:
    """The prefixes of the bucket that hold a borg repository (a config object with a
    [repository] section), looked for SEARCH_DEPTH levels down; at most MOST_PREFIXES_NAMED."""
    listing = await run(parts, mirror, rclone.find_files_named(mirror.bucket_root, "config", SEARCH_DEPTH))
    try:
        candidates = folders_with(parse_listing(listing.stdout), "config")
    except ListingUnreadable:
        return []
    found = []
    for prefix in candidates[:MOST_PREFIXES_NAMED]:
        text = (await run(parts, mirror, rclone.read_file(f"{mirror.bucket_root}/{prefix}/config"))).stdout
        if is_repository_config(text):
            found.append(prefix)
    return found


def repository_id(config_text: str) -> str | None:
    """The id in a borg repository's config file."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(config_text)
        return parser.get("repository", "id", fallback=None)
    except configparser.Error:
        return None


def local_repository_id(folder: str) -> str | None:
    try:
        descriptor = os.open(os.path.join(folder, "config"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with open(descriptor, encoding="utf-8", errors="replace") as file:
        return repository_id(file.read(65536))


@dataclass(frozen=True)
class PrefixContents:
    """What a prefix holding another repository holds: what take_over would delete."""

    repository_id: str
    objects: int
    size: int
    index_entries: int | None  # None: the index could not be read

    @property
    def may_hold_snapshots(self) -> bool:
        """An index naming one object names the manifest alone: no archive, no snapshot."""
        return self.index_entries is None or self.index_entries > 1

    def describe(self) -> str:
        held = f"id {self.repository_id[:12]}: {self.objects} objects, {self.size:,} bytes in the bucket"
        if self.index_entries is None:
            return f"{held}; its index could not be read, so it may hold snapshots"
        if not self.may_hold_snapshots:
            return f"{held}; its index lists at most its manifest: no snapshots"
        return f"{held}; its index lists {self.index_entries} chunks, so it holds snapshots"


async def prefix_contents(parts: MirrorParts, mirror: MirrorConfig, remote_id: str) -> PrefixContents:
    files = await list_prefix(parts, mirror)
    index = repository_copy(files).index
    entries = None
    if index is not None:
        start = await run(parts, mirror, rclone.read_start(f"{mirror.remote}/{index}", INDEX_COUNT_END))
        entries = index_entry_count(start.stdout)
    return PrefixContents(remote_id, len(files), sum(file.size for file in files), entries)


async def claim_prefix(parts: MirrorParts, mirror: MirrorConfig, remote_id: str | None, local_id: str | None,
                       take_over: bool, replace_object_count: int | None = None,
                       count_option: str = REPLACE_COUNT_OPTION, local_folder: str | None = None) -> bool:
    """Another repository's mirror under the prefix is not overwritten unless the caller says so,
    and, when it may hold snapshots, confirms the number of objects under the prefix (what
    the error names); taken over, it is deleted before this repository's goes there. Whether it was."""
    if remote_id is None:
        return False
    if remote_id == local_id:
        if not take_over or local_folder is None or not await _bucket_ahead(parts, mirror, local_folder):
            return False
        what = "a later state of this repository, written by another box after this one's copy was made"
    else:
        what = "another borg repository"
    held = await prefix_contents(parts, mirror, remote_id)
    if not take_over:
        raise RpcError(ErrorCode.REPOSITORY_EXISTS,
                       f"{mirror.location()} holds {what} ({held.describe()}); this one cannot "
                       "be mirrored there: choose another prefix. take_over would DELETE that repository from "
                       "the bucket, with every snapshot in it", {"param": "prefix"})
    if held.may_hold_snapshots and replace_object_count != held.objects:
        given = "not given" if replace_object_count is None else f"{replace_object_count} given"
        raise invalid_params(
            count_option,
            f"{mirror.location()} holds {what} ({held.describe()}). take_over DELETES it, "
            f"with every snapshot in it: it is replaced only when {count_option} equals the number of "
            f"objects under the prefix ({given})")
    log.warning("taking over %s: deleting the mirror of repository %s (%d objects)",
                mirror.location(), remote_id, held.objects)
    await run(parts, mirror, rclone.delete_all(mirror.remote))
    return True


async def _bucket_ahead(parts: MirrorParts, mirror: MirrorConfig, folder: str) -> bool:
    """Whether the bucket's copy of this repository names a later transaction than the local
    one: another box (the one this box was restored from) went on writing there."""
    bucket_transaction = repository_copy(await list_prefix(parts, mirror)).transaction
    local = await trio.to_thread.run_sync(partial(read_repository_files, folder, read_tails=False))
    return bucket_transaction is not None and local.transaction is not None and bucket_transaction > local.transaction


class MirrorProgress:
    """The job's progress across rclone's steps: bytes, files, percent and ETA of the current step."""

    def __init__(self, report: ReportProgress) -> None:
        self._report = report
        self.uploaded_bytes = 0
        self.uploaded_files = 0
        self.deleted_files = 0
        self._step = ""

    def step(self, name: str) -> Callable[[rclone.TransferStats], None]:
        """Begin a step: it goes into the job's log and its progress starts from nothing."""
        self._step = name
        write_log = job_log()
        if write_log is not None:
            write_log("INFO", name)
        self._report(progress_with(step=name, bytes=0, total_bytes=None, files=0, total_files=None,
                                   percent=None, eta=None))
        return self._on_stats

    def step_done(self, stats: rclone.TransferStats | None) -> None:
        if stats is not None:
            self.uploaded_bytes += stats.bytes
            self.uploaded_files += stats.transfers
            self.deleted_files += stats.deletes

    def _on_stats(self, stats: rclone.TransferStats) -> None:
        percent = round(100.0 * stats.bytes / stats.total_bytes, 1) if stats.total_bytes else None
        self._report(progress_with(step=self._step, bytes=stats.bytes, total_bytes=stats.total_bytes,
                                   files=stats.transfers, total_files=stats.total_transfers,
                                   percent=percent, eta=stats.eta))
