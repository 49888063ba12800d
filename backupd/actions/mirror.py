"""The off-site mirror's policy: checking a bucket before it is used, when a mirror runs and in
what order it copies, verification, retries with back-off, and the download onto a new box."""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.borg.transactions import repository_marker
from backupd.config import BackupConfig
from backupd.errors import invalid_params
from backupd.jobs import Job, JobState, ReportProgress, job_log
from backupd.mirror import rclone
from backupd.mirror.config import MIRROR_PARAMS, MirrorConfig, mirror_from_params
from backupd.mirror.errors import RcloneFailed, mirror_error
from backupd.mirror.state import MirrorState, measure_local_repository
from backupd.params import check_params
from backupd.scheduler import retry_delay
from backupd.service import Service
from backupd.ssh import remote_location
from backupd.state import Problem

log = logging.getLogger(__name__)

CHECK_MARKER = ".backupd-write-check"
# Jobs after whose success the bucket is brought up to date; after a check it is compared whole.
MIRRORED_AFTER = frozenset({"snapshot", "prune", "configure", "mirror_setup"})
COMPARED_WHOLE_AFTER = frozenset({"check"})
# A snapshot's prune starts right after it: one mirror then covers both.
SETTLE_SECONDS = 1.0
# Files written within this much before the last mirror began are compared again.
MTIME_MARGIN_SECONDS = 2.0
# Past this many changed files the whole repository is compared (argv stays short).
MOST_FILES_COMPARED_BY_NAME = 200


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


def require_mirror(service: Service) -> MirrorConfig:
    if service.mirror is None:
        raise RpcError(ErrorCode.NOT_CONFIGURED, "No off-site mirror is configured: call configure_mirror first",
                       {"param": "mirror"})
    return service.mirror


async def run(service: Service, mirror: MirrorConfig, command: rclone.RcloneCommand,
              on_stats: Callable[[rclone.TransferStats], None] | None = None,
              listing_bucket: bool = False) -> rclone.RcloneResult:
    """One rclone command against the mirror's bucket; its failure as a typed error. The log of
    the job that runs it says which rclone command ran, and rclone's errors."""
    write_log = job_log()
    if write_log is not None:
        write_log("INFO", f"running rclone {command.args[0]}")
    try:
        return await rclone.run_rclone(command, mirror.rclone_environment(), service.secrets() + mirror.secrets(),
                                       upload_limit_kib=service.settings.upload_limit, on_stats=on_stats)
    except RcloneFailed as failure:
        if write_log is not None:
            for message in failure.errors:
                write_log("ERROR", f"rclone: {message}")
        raise mirror_error(failure, mirror.location(), listing_bucket) from None


async def check_bucket(service: Service, mirror: MirrorConfig) -> str | None:
    """List the bucket, write and delete a small marker under the prefix: the keys may do what
    mirroring needs. Returns the id of the borg repository already under the prefix, if any."""
    await run(service, mirror, rclone.list_folder(mirror.bucket_root), listing_bucket=True)
    marker = f"{mirror.remote}/{CHECK_MARKER}"
    await run(service, mirror, rclone.touch(marker))
    await run(service, mirror, rclone.delete_file(marker))
    return await remote_repository_id(service, mirror)


async def remote_repository_id(service: Service, mirror: MirrorConfig) -> str | None:
    listing = await run(service, mirror, rclone.list_folder(mirror.remote))
    if '"Name":"config"' not in listing.stdout.replace(" ", ""):
        return None
    text = (await run(service, mirror, rclone.read_file(f"{mirror.remote}/config"))).stdout
    return repository_id(text)


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


async def claim_prefix(service: Service, mirror: MirrorConfig, remote_id: str | None, local_id: str | None,
                       take_over: bool) -> bool:
    """Another repository's mirror under the prefix is not overwritten unless the caller says so;
    taken over, it is deleted before this repository's goes there. Whether it was."""
    if remote_id is None or remote_id == local_id:
        return False
    if take_over:
        log.warning("taking over %s: deleting the mirror of repository %s", mirror.location(), remote_id)
        await run(service, mirror, rclone.delete_all(mirror.remote))
        return True
    raise RpcError(ErrorCode.REPOSITORY_EXISTS,
                   f"{mirror.location()} already holds the mirror of another repository; choose another prefix, "
                   "or pass take_over to replace it with this one", {"param": "prefix"})


async def configure_mirror(service: Service, params: dict[str, Any],
                           requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    folder = require_local(service.require_config())
    mirror = mirror_from_params(params, service.box_name())
    work = partial(_set_up, service, mirror, folder, params.get("take_over", False))
    job = service.jobs.start("mirror_setup", "manual", work, requested_by)
    await service.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return job.result


async def _set_up(service: Service, mirror: MirrorConfig, folder: str, take_over: bool,
                  job: Job, report: ReportProgress) -> dict[str, Any]:
    report({"step": "checking the bucket", "location": mirror.location()})
    remote_id = await check_bucket(service, mirror)
    local_id = await trio.to_thread.run_sync(local_repository_id, folder)
    taken_over = await claim_prefix(service, mirror, remote_id, local_id, take_over)
    await adopt(service, mirror)
    return {"location": mirror.location(), "taken_over": taken_over}


async def adopt(service: Service, mirror: MirrorConfig) -> None:
    """Save the mirror; its record starts afresh when it is another bucket or prefix."""
    previous = service.mirror
    await service.save_mirror(mirror)
    if previous is None or previous.location() != mirror.location():
        await service.update_mirror_state(**vars(MirrorState()))


async def turn_off(service: Service, requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop mirroring and forget the keys; the bucket is left as it is."""
    async def forget(job: Job, report: ReportProgress) -> dict[str, Any]:
        location = service.mirror.location() if service.mirror else None
        await service.save_mirror(None)
        return {"location": location}

    job = service.jobs.start("mirror_off", "manual", forget, requested_by)
    await service.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return job.result


def start_mirror(service: Service, trigger: str, requested_by: dict[str, Any] | None = None,
                 compare_whole: bool = False) -> Job:
    """Start bringing the bucket up to date, or return the mirror already running."""
    require_local(service.require_config())
    require_mirror(service)
    running = service.jobs.current
    if running is not None and running.kind == "mirror":
        return running
    return service.jobs.start("mirror", trigger, partial(_mirror, service, compare_whole), requested_by)


class MirrorProgress:
    """The job's progress across rclone's steps: bytes, files, percent and ETA of the current step."""

    def __init__(self, report: ReportProgress) -> None:
        self._report = report
        self.uploaded_bytes = 0
        self.uploaded_files = 0
        self.deleted_files = 0
        self._step = ""

    def step(self, name: str) -> Callable[[rclone.TransferStats], None]:
        self._step = name
        self._report({"step": name, "bytes": 0, "total_bytes": None, "files": 0, "total_files": None,
                      "percent": None, "eta": None})
        return self._on_stats

    def step_done(self, stats: rclone.TransferStats | None) -> None:
        if stats is not None:
            self.uploaded_bytes += stats.bytes
            self.uploaded_files += stats.transfers
            self.deleted_files += stats.deletes

    def _on_stats(self, stats: rclone.TransferStats) -> None:
        percent = round(100.0 * stats.bytes / stats.total_bytes, 1) if stats.total_bytes else None
        self._report({"step": self._step, "bytes": stats.bytes, "total_bytes": stats.total_bytes,
                      "files": stats.transfers, "total_files": stats.total_transfers,
                      "percent": percent, "eta": stats.eta})


UPLOAD_STEPS = (
    ("uploading new segments", rclone.upload_new_segments),
    ("uploading the index", rclone.upload_metadata),
    ("removing deleted segments", rclone.delete_old_segments),
)


async def _mirror(service: Service, compare_whole: bool, job: Job, report: ReportProgress) -> dict[str, Any]:
    config = service.require_config()
    mirror = require_mirror(service)
    folder = require_local(config)
    progress = MirrorProgress(report)
    started = service.clock.now()
    previous = service.mirror_state
    try:
        async with service.repository_lock:
            before = await trio.to_thread.run_sync(repository_marker, folder)
            archives = tuple(archive.name for archive in service.repository.archives)
            since = previous.last_success_started if not compare_whole else None
            changed = await trio.to_thread.run_sync(changed_files, folder, since)
            for name, build in UPLOAD_STEPS:
                result = await run(service, mirror, build(folder, mirror.remote), on_stats=progress.step(name))
                progress.step_done(result.stats)
            progress.step("comparing with the bucket")
            compared = await _compare(service, mirror, folder, changed)
            if await trio.to_thread.run_sync(repository_marker, folder) != before:
                raise RpcError(ErrorCode.MIRROR_FAILED, "The repository changed while it was copied (a borg "
                               "process outside the daemon wrote to it); the next mirror copies it again")
    except RpcError as error:
        since = previous.error.since if previous.error and previous.error.code == error.code else service.clock.now()
        await service.update_mirror_state(error=Problem(error.code, error.message, since, "mirror"))
        raise
    finished = service.clock.now()
    await service.update_mirror_state(
        last_success=finished, last_success_started=started, mirrored_archives=archives,
        uploaded_bytes=progress.uploaded_bytes, error=None,
        last_verified=finished if compared is None else previous.last_verified,
    )
    await measure(service)
    return {
        "uploaded_bytes": progress.uploaded_bytes,
        "uploaded_files": progress.uploaded_files,
        "deleted_files": progress.deleted_files,
        "compared": "all" if compared is None else "changed",
        "compared_files": compared,
    }


def changed_files(folder: str, since: float | None) -> tuple[str, ...] | None:
    """The repository's files (relative paths) written since the given time; None: compare all."""
    if since is None:
        return None
    changed = []
    for root, folders, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative.startswith("lock."):
                continue
            try:
                if os.lstat(path).st_mtime >= since - MTIME_MARGIN_SECONDS:
                    changed.append(relative)
            except OSError:
                continue
    return tuple(sorted(changed)) if len(changed) <= MOST_FILES_COMPARED_BY_NAME else None


async def _compare(service: Service, mirror: MirrorConfig, folder: str,
                   changed: tuple[str, ...] | None) -> int | None:
    """Compare sizes and hashes of the changed files (or of all) with the bucket's; the number
    of files compared by name, or None when the whole repository was."""
    if changed == ():
        return 0
    command = rclone.compare(folder, mirror.remote, changed)
    try:
        await rclone.run_rclone(command, mirror.rclone_environment(), service.secrets())
    except RcloneFailed as failure:
        error = mirror_error(failure, mirror.location())
        if error.code != ErrorCode.MIRROR_FAILED:
            raise error from None
        raise RpcError(ErrorCode.MIRROR_FAILED, f"{mirror.location()} does not match the repository after the "
                       f"copy: {len(failure.errors) - 1 or 1} differences, the first: {failure.reason(first=True)}",
                       {"exit_code": failure.exit_code}) from None
    return None if changed is None else len(changed)


async def measure(service: Service) -> None:
    """Measure the local repository's size and what is not off-site yet, off the event loop."""
    config = service.config
    if config is None or remote_location(config.repository) is not None:
        return
    since = service.mirror_state.last_success_started if service.mirror else None
    service.local_usage = await trio.to_thread.run_sync(
        measure_local_repository, config.repository.removeprefix("file://"), since)
    service.publish_status()


StartMirror = Callable[..., Job]


async def keep_mirrored(service: Service, start: StartMirror = start_mirror, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Bring the bucket up to date after each change of the repository, retrying a failed
    mirror after 1, 2, 4 ... minutes (capped at an hour) until it succeeds."""
    wanted = trio.Event()
    compare_whole = False

    def job_ended() -> None:
        nonlocal compare_whole
        latest = service.jobs.recent(1)
        if not latest or latest[0].state != JobState.SUCCEEDED:
            return
        if latest[0].kind in MIRRORED_AFTER or latest[0].kind in COMPARED_WHOLE_AFTER:
            compare_whole = compare_whole or latest[0].kind in COMPARED_WHOLE_AFTER
            wanted.set()

    service.job_listeners.append(job_ended)
    task_status.started()
    await measure(service)
    failures = 0
    while True:
        await wanted.wait()
        await trio.sleep(SETTLE_SECONDS)
        while (running := service.jobs.current) is not None:
            await service.jobs.wait(running)
            await trio.sleep(SETTLE_SECONDS)
        wanted = trio.Event()
        await measure(service)
        await trio.lowlevel.checkpoint()  # a cancel that came during the walk starts nothing
        if service.mirror is None or service.config is None:
            continue
        try:
            job = start(service, "schedule", compare_whole=compare_whole)
        except RpcError as error:
            log.info("no mirror after the change: %s", error.message)
            continue
        await service.jobs.wait(job)
        if job.state == JobState.SUCCEEDED:
            failures, compare_whole = 0, False
        elif job.state == JobState.FAILED:
            failures += 1
            delay = retry_delay(failures)
            log.info("mirror failed (%s); trying again in %.0f s", (job.error or {}).get("code"), delay)
            with trio.move_on_after(delay):
                await wanted.wait()
            wanted.set()
        elif service.jobs.current is not None:
            wanted.set()  # it gave way to a job a person asked for; it runs again after that one


DOWNLOAD_STEPS = (
    ("downloading segments", rclone.download_segments),
    ("downloading the index", rclone.download_metadata),
)


def download_folder(folder: str) -> str:
    """Where a repository is downloaded before it takes its place: beside it, so a download
    that was stopped continues, and the repository folder never holds half a repository."""
    parent, name = os.path.split(os.path.normpath(folder))
    return os.path.join(parent, f".{name}.download")


def holds_nothing(folder: str) -> bool:
    try:
        return not os.listdir(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False


async def connect_to_bucket(service: Service, config: BackupConfig, mirror: MirrorConfig,
                            report: ReportProgress) -> str | None:
    """Check the bucket before the repository is connected to; when the repository folder is
    missing or empty and the bucket holds a repository under the prefix, download it there
    (resuming a download that was stopped). Returns the id of the bucket's repository."""
    folder = require_local(config)
    report({"step": "checking the bucket", "location": mirror.location()})
    remote_id = await check_bucket(service, mirror)
    if remote_id is None or not await trio.to_thread.run_sync(holds_nothing, folder):
        return remote_id
    staging = download_folder(folder)
    await trio.to_thread.run_sync(partial(os.makedirs, staging, mode=0o700, exist_ok=True))
    log.info("downloading the repository from %s into %s", mirror.location(), folder)
    progress = MirrorProgress(report)
    for name, build in DOWNLOAD_STEPS:
        result = await run(service, mirror, build(mirror.remote, staging), on_stats=progress.step(name))
        progress.step_done(result.stats)
    await trio.to_thread.run_sync(_put_in_place, staging, folder)
    return remote_id


def _put_in_place(staging: str, folder: str) -> None:
    if os.path.isdir(folder):
        os.rmdir(folder)  # empty: holds_nothing said so
    os.rename(staging, folder)
