"""Reset: back to the operator's defaults. Automatic backups stop, the passphrase, the SSH key,
the mirror's keys and borg's local cache are erased from this box; the repository, its archives
and the mirror's bucket are not touched."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import trio
from backupctl.protocol import RpcError

from backupd.jobs import Job, ReportProgress
from backupd.service import Service
from backupd.state import RepositoryState

# Below the borg base folder: the chunk cache and the records of known repositories.
BORG_LOCAL_STATE = (Path(".cache") / "borg", Path(".config") / "borg" / "security")


async def reset(service: Service, requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    job = service.jobs.start("reset", "manual", partial(_reset, service), requested_by)
    await service.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return {}


async def _reset(service: Service, job: Job, report: ReportProgress) -> dict[str, Any]:
    repository = service.config.repository if service.config else None
    await service.save_config(None)
    await service.save_mirror(None)  # the keys go; the bucket and what it holds stay
    await service.keeper.update(**_fresh_state())
    base = service.borg.base_dir()
    await trio.to_thread.run_sync(_erase, [*(base / part for part in BORG_LOCAL_STATE), service.borg.ssh.folder])
    service.next_run = None
    service.publish_status()
    return {"repository": repository}


def _fresh_state() -> dict[str, Any]:
    fresh = RepositoryState()
    return {name: getattr(fresh, name) for name in RepositoryState.__dataclass_fields__}


def _erase(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
