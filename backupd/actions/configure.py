"""Configure: connect to an existing repository (downloaded first from a mirror's bucket on a
new box), or create a new one, and adopt it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.bucket import claim_prefix, local_repository_id, mirror_params, require_local
from backupd.actions.mirror import adopt
from backupd.actions.prefix_owner import claim_ownership, keep_claim
from backupd.actions.mirror_download import connect_to_bucket, holds_nothing
from backupd.actions.parts import MirrorParts, RepositoryParts
from backupd.actions.repository import EMPTY_REPOSITORY, read_repository
from backupd.borg import commands
from backupd.config import BackupConfig, changed_config, check_new_passphrase, config_from_params
from backupd.configuration import Configuration
from backupd.errors import busy, invalid_params
from backupd.jobs import Job, ReportProgress
from backupd.mirror.config import MirrorConfig, mirror_from_params
from backupd.progress import progress_with
from backupd.restorable import refuse_unrestorable
from backupd.source_room import room_for_sources, room_warning
from backupd.ssh import remote_location

log = logging.getLogger(__name__)

# Where a repository restored from a bucket goes when configure names no folder: in the state folder.
DEFAULT_LOCAL_REPOSITORY = "repository"


async def configure(
    parts: MirrorParts, configuration: Configuration, params: dict[str, Any],
    requested_by: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = parts.repository.settings()
    mirror_options = mirror_params(params["mirror"]) if params.get("mirror") else None
    if mirror_options is not None and "repository" not in params:
        params = {**params, "repository": str(settings.state_dir / DEFAULT_LOCAL_REPOSITORY)}
    config = config_from_params(params, settings.defaults, configuration.current)
    refuse_unrestorable(config.sources)
    mirror = mirror_from_params(mirror_options, parts.box_name()) if mirror_options is not None else None
    if mirror is not None:
        require_local(config)
    work = partial(_connect, parts, configuration, config, may_create(params, mirror), mirror,
                   TakeOver.asked_in(mirror_options), "mirror" in params)
    job = parts.repository.jobs.start("configure", "manual", work, requested_by)
    await parts.repository.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return cast(dict[str, Any], job.result)


@dataclass(frozen=True)
class TakeOver:
    """What the caller says of a prefix that holds another repository: replace it, and the
    number of objects under it they confirm (needed when it may hold snapshots)."""

    requested: bool
    confirmed_objects: int | None = None

    @classmethod
    def asked_in(cls, mirror_options: dict[str, Any] | None) -> TakeOver:
        if mirror_options is None:
            return cls(False)
        return cls(bool(mirror_options.get("take_over")), mirror_options.get("replace_object_count"))


def may_create(params: dict[str, Any], mirror: MirrorConfig | None) -> bool:
    """Whether a repository may be created when there is none. By default yes, but not with a
    mirror: that is a box restoring from a bucket, and a prefix with no repository is a
    mistake to report, not a place to start a new one, unless `create` is true."""
    create = params.get("create")
    if mirror is not None:
        return create is True
    return create is not False


async def change(parts: RepositoryParts, configuration: Configuration, params: dict[str, Any]) -> dict[str, Any]:
    """Change settings of the configured backups (no passphrase needed), keeping the rest."""
    running = parts.jobs.current
    if running is not None and running.kind in ("configure", "reset"):
        raise busy(running.to_record())
    config = changed_config(configuration.require(), params)
    refuse_unrestorable(config.sources)
    await configuration.save(config)
    return config.public()


async def _connect(parts: MirrorParts, configuration: Configuration, config: BackupConfig, creatable: bool,
                   mirror: MirrorConfig | None, take_over: TakeOver, mirror_given: bool,
                   job: Job, report: ReportProgress) -> dict[str, Any]:
    borg, keeper = parts.repository.borg, parts.repository.keeper
    restoring = mirror is not None and await trio.to_thread.run_sync(holds_nothing, require_local(config))
    remote_id = await connect_to_bucket(parts, config, mirror, creatable, report) if mirror is not None else None
    report(progress_with(step="connecting", repository=config.repository))
    server = remote_location(config.repository)
    if server is not None and config.host_key is not None:
        identity = await borg.ensure_ssh_identity()
        await trio.to_thread.run_sync(identity.pin, server, config.host_key, parts.repository.settings().ssh_timeout)
    async with keeper.lock:
        created = False
        try:
            facts = await read_repository(borg, parts.repository.settings().hostname, config, adopt=True)
        except RpcError as error:
            if error.code != ErrorCode.REPOSITORY_NOT_FOUND and not _empty_local_folder(config.repository, error):
                raise
            if not creatable:
                raise RpcError(ErrorCode.REPOSITORY_NOT_FOUND,
                               f"There is no repository at {config.repository} (create was false)") from None
            check_new_passphrase(config.passphrase)
            report(progress_with(step="creating", repository=config.repository))
            await borg.run(commands.init(config.repository, config.encryption), config=config)
            created = True
            facts = EMPTY_REPOSITORY
        if mirror is not None:
            local_id = await trio.to_thread.run_sync(local_repository_id, require_local(config))
            await claim_prefix(parts, mirror, remote_id, local_id, take_over.requested, take_over.confirmed_objects,
                               local_folder=require_local(config))
            if take_over.requested or not restoring or remote_id is None:
                # Restoring only reads the bucket: the restored box mirrors there once it takes the prefix over.
                mirror = keep_claim(parts, mirror)
                await claim_ownership(parts, mirror, take_over.requested)
    host_key = await trio.to_thread.run_sync(borg.ssh.fingerprint_of, server) if server else None
    await keeper.update(
        **facts, problem=None, configured_at=parts.repository.now(), last_attempt=None, host_key=host_key
    )
    previous = configuration.current
    await configuration.save(config)
    if mirror is not None:
        await adopt(parts, mirror)
    elif mirror_given or (previous is not None and previous.repository != config.repository):
        await parts.mirroring.save(None)  # `mirror: {}` turns it off; another repository is not mirrored into its bucket
    result: dict[str, Any] = {"created": created, "snapshot_count": keeper.repository.snapshot_count}
    warnings = await _space_warnings(config)
    if warnings:
        result["warnings"] = warnings
    return result


async def _space_warnings(config: BackupConfig) -> list[str]:
    if not config.sources or remote_location(config.repository) is not None:
        return []
    room = await trio.to_thread.run_sync(room_for_sources, config.sources, config.repository.removeprefix("file://"))
    warning = room_warning(room)
    if warning is not None:
        log.warning("%s", warning)
    return [warning] if warning else []


def _empty_local_folder(location: str, error: RpcError) -> bool:
    """borg calls an empty folder (a new disk's mount point) not a repository; a new one can go
    there. A folder holding only lost+found (a new file system) cannot: borg needs it empty."""
    if error.code != ErrorCode.REPOSITORY_INVALID or remote_location(location) is not None:
        return False
    folder = location.removeprefix("file://")
    try:
        entries = os.listdir(folder)
    except OSError:
        return False
    if entries == ["lost+found"]:
        raise invalid_params(
            "repository", f"{folder} is the top of a new file system (it holds lost+found); a repository "
            f"needs an empty folder: use a folder inside it, such as {os.path.join(folder, 'backups')}",
        )
    return not entries
