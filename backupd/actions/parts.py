"""What actions are given instead of the whole service. Actions on the repository get borg
with the configured secrets, the keeper of the repository's facts and its lock, the job
runner, and the settings, configuration and clock as they are at the moment of asking; the
mirror's actions get the mirror's configuration and the secrets rclone must not show too;
looking inside snapshots and restoring them get the snapshots' indexes and the clean-up of
the last restore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from backupd.borg.invoker import BorgInvoker
from backupd.config import BackupConfig
from backupd.configuration import Mirroring
from backupd.errors import not_configured
from backupd.jobs import JobRunner
from backupd.keeper import Keeper
from backupd.settings import Settings

if TYPE_CHECKING:
    from backupd.actions.browse import Browser


@dataclass(frozen=True)
class RepositoryParts:
    borg: BorgInvoker
    keeper: Keeper
    jobs: JobRunner
    settings: Callable[[], Settings]
    configured: Callable[[], BackupConfig | None]
    now: Callable[[], float]

    def require_config(self) -> BackupConfig:
        config = self.configured()
        if config is None:
            raise not_configured()
        return config


@dataclass(frozen=True)
class MirrorParts:
    repository: RepositoryParts
    mirroring: Mirroring
    # Every secret the daemon holds, the backups' passphrase with the mirror's keys.
    secrets: Callable[[], tuple[str, ...]]
    box_name: Callable[[], str]


def already_set() -> trio.Event:
    event = trio.Event()
    event.set()
    return event


@dataclass
class SnapshotParts:
    repository: RepositoryParts
    browser: Browser
    # Set when the last restore's clean-up is done; the next restore waits for it.
    restore_cleaned_up: trio.Event = field(default_factory=already_set)
