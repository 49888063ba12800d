"""Reset: back to the operator's defaults. Automatic backups stop, the passphrase, the SSH key,
the mirror's keys and borg's local cache are erased from this box; the repository, its archives
and the mirror's bucket are not touched."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio
from backupctl.protocol import RpcError

from backupd.jobs import Job, ReportProgress
from backupd.actions.parts import RepositoryParts
from backupd.state import RepositoryState

# Below the borg base folder: the chunk cache and the records of known repositories.
BORG_LOCAL_STATE = (Path(".cache") / "borg", Path(".config") / "borg" / "security")


async def reset(parts: RepositoryParts, forget_configuration: Callable[[], Awaitable[None]],
                requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    job = parts.jobs.start("reset", "manual", partial(_reset, parts, forget_configuration), requested_by)
    await parts.jobs.wait(job)
    if job.error is not None:
        raise RpcError.from_wire(job.error)
    return {}


async def _reset(parts: RepositoryParts, forget_configuration: Callable[[], Awaitable[None]],
                 job: Job, report: ReportProgress) -> dict[str, Any]:
    config = parts.configured()
    repository = config.repository if config else None
    await forget_configuration()
    await parts.keeper.update(**_fresh_state())
    base = parts.borg.base_dir()
    await trio.to_thread.run_sync(_erase, [*(base / part for part in BORG_LOCAL_STATE), parts.borg.ssh.folder])
    return {"repository": repository}


def _fresh_state() -> dict[str, Any]:
    fresh = RepositoryState()
    return {name: getattr(fresh, name) for name in RepositoryState.__dataclass_fields__}


def _erase(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
