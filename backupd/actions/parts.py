"""What actions on the repository use: borg with the configured secrets, the keeper of the
repository's facts and its lock, the job runner, and the settings, configuration and clock
as they are at the moment of asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backupd.borg.invoker import BorgInvoker
from backupd.config import BackupConfig
from backupd.errors import not_configured
from backupd.jobs import JobRunner
from backupd.keeper import Keeper
from backupd.settings import Settings


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
