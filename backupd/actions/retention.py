"""Retention after automatic snapshots: prune this box's archives by the keep rules, then
compact the repository at most once a day."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

from backupd.actions.maintenance import compact_repository, prune_archives
from backupd.actions.repository import refresh_if_changed
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from backupd.borg.archives import stored_size
from backupd.jobs import Job, ReportProgress
from backupd.progress import progress_with
from backupd.service import Service

COMPACT_INTERVAL = 24 * 3600.0


def start_prune(service: Service, trigger: str) -> Job:
    service.require_config()
    return service.jobs.start("prune", trigger, partial(_prune, service))


async def _prune(service: Service, job: Job, report: ReportProgress) -> dict[str, Any]:
    config = service.require_config()
    own = OwnArchives.of_host(service.settings.hostname)
    report(progress_with(step="pruning"))
    async with service.keeper.lock:
        await refresh_if_changed(service)
        outcome = await prune_archives(service.borg, config, own)
        compacted = False
        last_compact = service.keeper.repository.last_compact
        if outcome.pruned and (last_compact is None or service.clock.now() - last_compact >= COMPACT_INTERVAL):
            report(progress_with(step="compacting"))
            await compact_repository(service.borg, config)
            compacted = True
        info = await service.borg.run(commands.info_latest(config.repository), config=config)
    await service.keeper.remove_archives(
        outcome.pruned,
        total_size=stored_size(info.json),
        last_compact=service.clock.now() if compacted else last_compact,
    )
    return {**asdict(outcome), "compacted": compacted}
