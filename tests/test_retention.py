"""Retention in this process: pruning after automatic snapshots removes only this box's
archives beyond the keep rules, compacts, and the overview follows."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import trio

from backupd.actions.repository import refresh
from backupd.actions.retention import start_prune
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from tests.conftest import PASSPHRASE
from tests.in_process import HOSTNAME, call, make_service, running

DAY = 86400.0
FIRST = 1_700_000_000.0


async def test_prune_removes_only_this_boxs_archives_beyond_the_rules(
    tmp_path: Path, repository: Path, sample_data: Path
) -> None:
    service = make_service(tmp_path)
    own, other = OwnArchives.of_host(HOSTNAME), OwnArchives.of_host("otherbox")
    times = [FIRST + day * DAY for day in range(3)]
    names = [own.name_at(when) for when in times] + [other.name_at(times[0])]
    async with running(service):
        await call(service, "configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                          "sources": [str(sample_data)], "schedule": "manual",
                                          "keep": {"hourly": 0, "daily": 1, "weekly": 0, "monthly": 0, "yearly": 0}})
        config = service.require_config()
        for name, when in zip(names, [*times, times[0]]):
            stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            await service.borg.run(commands.create(str(repository), name, [str(sample_data)], timestamp=stamp),
                                   config=config)
        assert await refresh(service.parts, service.now_doing)  # as the daemon reads the repository at start
        with trio.fail_after(60):
            job = start_prune(service.parts, "schedule")
            await service.jobs.wait(job)
        listing = await service.borg.run(commands.list_archives(str(repository)), config=config)
        status = await call(service, "status")
    left = sorted(archive["name"] for archive in listing.json["archives"])
    assert job.state == "succeeded", job.error
    assert left == sorted([names[2], names[3]])
    assert sorted(job.result["pruned"]) == sorted(names[:2]) and job.result["compacted"] is True
    assert status["snapshot_count"] == 2 and service.keeper.repository.last_compact is not None
