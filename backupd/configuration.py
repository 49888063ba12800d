"""The configurations the daemon works by: the backups' (with the schedule it sets) and the
off-site mirror's (with what the local repository measures). Each is saved before it is
adopted: a configuration that could not be saved would be lost at the next start."""

from __future__ import annotations

from backupd.config import BackupConfig
from backupd.errors import not_configured
from backupd.events import Change, Changes
from backupd.keeper import Keeper
from backupd.mirror.config import MirrorConfig
from backupd.mirror.state import LocalUsage
from backupd.schedule import Schedule, parse_schedule


class Configuration:
    """The backups' configuration, None until configured."""

    def __init__(self, keeper: Keeper, changes: Changes) -> None:
        self._keeper = keeper
        self._changes = changes
        self.current: BackupConfig | None = None
        self._schedule: Schedule | None = None

    def require(self) -> BackupConfig:
        if self.current is None:
            raise not_configured()
        return self.current

    def schedule(self) -> Schedule | None:
        """The automatic schedule, or None when backups are manual or not configured."""
        return self._schedule

    def adopt(self, config: BackupConfig | None) -> None:
        """Take a configuration already saved (or, in tests, one never to be)."""
        self.current = config
        schedule = parse_schedule(config.schedule) if config else None
        self._schedule = schedule if schedule and schedule.automatic and config and config.sources else None

    async def save(self, config: BackupConfig | None) -> None:
        await self._keeper.save_config(config)
        self.adopt(config)
        self._changes.tell(Change.CONFIG)

    def secrets(self) -> tuple[str, ...]:
        return (self.current.passphrase,) if self.current else ()


class Mirroring:
    """The off-site mirror's configuration, None when there is no mirror, and the local
    repository's size and what of it is not off-site yet, as last measured."""

    def __init__(self, keeper: Keeper, changes: Changes) -> None:
        self._keeper = keeper
        self._changes = changes
        self.current: MirrorConfig | None = None
        self.local_usage = LocalUsage()

    async def save(self, mirror: MirrorConfig | None) -> None:
        await self._keeper.save_mirror(mirror)
        self.current = mirror
        self._changes.tell(Change.STATUS)

    def measured(self, usage: LocalUsage) -> None:
        self.local_usage = usage
        self._changes.tell(Change.STATUS)

    def secrets(self) -> tuple[str, ...]:
        return self.current.secrets() if self.current else ()
