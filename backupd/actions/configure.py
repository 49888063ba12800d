"""Configure: connect to an existing repository, or create a new one, and adopt it."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.repository import EMPTY_REPOSITORY, read_repository
from backupd.borg import commands
from backupd.config import BackupConfig, changed_config, check_new_passphrase, config_from_params
from backupd.errors import busy, invalid_params
from backupd.jobs import Job, ReportProgress
from backupd.restorable import refuse_unrestorable
from backupd.service import Service
from backupd.ssh import remote_location


async def configure(
    service: Service, params: dict[str, Any], requested_by: dict[str, Any] | None = None
) -> dict[str, Any]:
    config = config_from_params(params, service.settings.defaults, service.config)
    refuse_unrestorable(config.sources)
    may_create = params.get("create", True)
    job = service.jobs.start("configure", "manual", partial(_connect, service, config, may_create), requested_by)
    await service.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return job.result


async def change(service: Service, params: dict[str, Any]) -> dict[str, Any]:
    """Change settings of the configured backups (no passphrase needed), keeping the rest."""
    running = service.jobs.current
    if running is not None and running.kind in ("configure", "reset"):
        raise busy(running.to_record())
    config = changed_config(service.require_config(), params)
    refuse_unrestorable(config.sources)
    await service.save_config(config)
    return config.public()


async def _connect(
    service: Service, config: BackupConfig, may_create: bool, job: Job, report: ReportProgress
) -> dict[str, Any]:
    report({"step": "connecting", "repository": config.repository})
    server = remote_location(config.repository)
    if server is not None and config.host_key is not None:
        identity = await service.ensure_ssh_identity()
        await trio.to_thread.run_sync(identity.pin, server, config.host_key, service.settings.ssh_timeout)
    async with service.repository_lock:
        created = False
        try:
            facts = await read_repository(service, config, adopt=True)
        except RpcError as error:
            if error.code != ErrorCode.REPOSITORY_NOT_FOUND and not _empty_local_folder(config.repository, error):
                raise
            if not may_create:
                raise RpcError(ErrorCode.REPOSITORY_NOT_FOUND,
                               f"There is no repository at {config.repository} (create was false)") from None
            check_new_passphrase(config.passphrase)
            report({"step": "creating", "repository": config.repository})
            await service.borg(commands.init(config.repository, config.encryption), config=config)
            created = True
            facts = EMPTY_REPOSITORY
    host_key = await trio.to_thread.run_sync(service.ssh.fingerprint_of, server) if server else None
    await service.update_repository(
        **facts, problem=None, configured_at=service.clock.now(), last_attempt=None, host_key=host_key
    )
    await service.save_config(config)
    return {"created": created, "snapshot_count": service.repository.snapshot_count}


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
