"""A real Service in this process, over its own state folder and real borg: its jobs run in a
nursery the test holds, and methods are called through the method table as a client's are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from backupctl.protocol import Request
from backupd.access import Peer
from backupd.api import dispatch
from backupd.service import Service
from backupd.settings import Settings
from backupd.store import Store
from tests.conftest import PASSPHRASE

ROOT = Peer(pid=1, uid=0, gid=0, groups=frozenset({0}), command="test")
HOSTNAME = "testbox"
CALL_TIMEOUT = 60.0


def make_service(tmp_path: Path) -> Service:
    settings = Settings(state_dir=tmp_path / "state", borg_base_dir=tmp_path / "borg-base", hostname=HOSTNAME)
    store = Store(settings.state_dir)
    store.open()
    service = Service(settings, store)
    service.load()
    return service


@asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    """The service with its job runner going, stopped when the block ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        yield service
        nursery.cancel_scope.cancel()


async def call(service: Service, method: str, params: dict[str, Any] | None = None) -> Any:
    with trio.fail_after(CALL_TIMEOUT):
        return await dispatch(service, Request(1, method, params or {}), ROOT, lambda shown: None)


async def configure(service: Service, repository: Path, sources: list[Path]) -> dict[str, Any]:
    return await call(service, "configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                             "sources": [str(source) for source in sources],
                                             "schedule": "manual"})
