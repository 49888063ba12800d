"""Retention after automatic snapshots: prune this box's archives by the keep rules, then
compact the repository at most once a day."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

from backupd.actions.maintenance import compact_repository, prune_archives
from backupd.actions.parts import RepositoryParts
from backupd.actions.repository import refresh_if_changed
from backupd.archive_names import OwnArchives
from backupd.borg import commands
from backupd.borg.archives import stored_size
from backupd.jobs import Job, ReportProgress
from backupd.progress import progress_with

COMPACT_INTERVAL = 24 * 3600.0


def start_prune(parts: RepositoryParts, trigger: str) -> Job:
    parts.require_config()
    return parts.jobs.start("prune", trigger, partial(_prune, parts))


async def _prune(parts: RepositoryParts, job: Job, report: ReportProgress) -> dict[str, Any]:
    config = parts.require_config()
    own = OwnArchives.of_host(parts.settings().hostname)
    report(progress_with(step="pruning"))
    async with parts.keeper.lock:
        await refresh_if_changed(parts)
        outcome = await prune_archives(parts.borg, config, own)
        compacted = False
        last_compact = parts.keeper.repository.last_compact
        if outcome.pruned and (last_compact is None or parts.now() - last_compact >= COMPACT_INTERVAL):
            report(progress_with(step="compacting"))
            await compact_repository(parts.borg, config)
            compacted = True
        info = await parts.borg.run(commands.info_latest(config.repository), config=config)
    await parts.keeper.remove_archives(
        outcome.pruned,
        total_size=stored_size(info.json),
        last_compact=parts.now() if compacted else last_compact,
    )
    return {**asdict(outcome), "compacted": compacted}
