"""The daemon's parts wired together: settings, the keeper of what is known, the
configurations, borg, jobs, the overview, how the parts hear of a change, and the parts each
action is given."""

from __future__ import annotations

import socket

import trio

from backupctl.protocol import ErrorCode, JobState, RpcError
from backupd.actions.browse import Browser
from backupd.actions.parts import MirrorParts, RepositoryParts, SnapshotParts
from backupd.actions.repository import Activity
from backupd.redaction import redact
from backupd.borg.invoker import BorgInvoker
from backupd.clock import SystemWallClock, WallClock, local_zone
from backupd.config import BackupConfig
from backupd.configuration import Configuration, Mirroring
from backupd.events import Change, Changes, EventHub
from backupd.jobs import HISTORY_LIMIT, Job, JobRunner, interrupted_error
from backupd.keeper import Keeper, Saved
from backupd.mirror.config import MirrorConfig
from backupd.mirror.state import LocalUsage
from backupd.notify import OperatorNotifier
from backupd.overview import Overview, settings_advice, settings_position
from backupd.schedule import Schedule
from backupd.settings import Settings, SettingsError
from backupd.store import Store


class Service:
    def __init__(self, settings: Settings, store: Store, clock: WallClock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemWallClock()
        self.zone = local_zone(settings.timezone)
        self.changes = Changes()
        self.hub = EventHub()
        self.keeper = Keeper(store, self.clock.now, self.changes, lambda: self.jobs.history_records())
        self.configuration = Configuration(self.keeper, self.changes)
        self.mirroring = Mirroring(self.keeper, self.changes)
        self.next_run: float | None = None
        self.jobs = JobRunner(self.hub, [], self._job_changed, self.clock.now, self.redact)
        self.borg = BorgInvoker(lambda: self.settings, self.configuration.require, self.redact,
                                self.keeper.storage_error)
        self.parts = RepositoryParts(self.borg, self.keeper, self.jobs, lambda: self.settings,
                                     lambda: self.configuration.current, self.clock.now)
        self.mirror_parts = MirrorParts(self.parts, self.mirroring, self.secrets, self.box_name)
        self.snapshot_parts = SnapshotParts(self.parts, Browser(self.parts))
        self.overview = Overview(self)
        self.notify = OperatorNotifier(
            lambda: self.settings.notify, self.box_name, self.secrets, self.publish_status, self.clock.now
        )
        self.settings_error: SettingsError | None = None
        self.settings_error_since = 0.0
        self.activity = Activity.IDLE
        self.changes.on(Change.STATUS, self._publish_overview)
        self.changes.on(Change.JOB_STARTED, lambda job: self.notify.job_started(job.to_record()))
        # Before the overview without the job goes out, so the job's problem is judged with the job.
        self.changes.on(Change.JOB_FINISHED,
                        lambda job: self.notify.job_finished(job.to_record(), self.overview.record().to_wire()))

    def load(self) -> None:
        """Take what an earlier run saved (blocking); a job it died in is recorded as interrupted."""
        self._resume(self.keeper.load())
        self.keeper.write_whole()

    async def load_off_loop(self) -> None:
        """load(), as the daemon starts: the saved documents, with thousands of archives, are
        read and written whole in worker threads."""
        self._resume(self.keeper.adopt(await trio.to_thread.run_sync(self.keeper.read)))
        await self.keeper.save_whole()

    def _resume(self, saved: Saved) -> None:
        self.configuration.adopt(saved.config)
        self.jobs.restore_history(saved.history)
        self.mirroring.current = saved.mirror
        interrupted = None
        for job in self.jobs.recent(1):
            if job.state == JobState.RUNNING:
                job.state = JobState.FAILED
                job.error = interrupted_error(job).to_wire()
                job.finished = job.finished or self.clock.now()
                interrupted = job
        self.notify.seed(self.jobs.recent(HISTORY_LIMIT), self.overview.record().to_wire(), interrupted)

    def now_doing(self, activity: Activity) -> None:
        self.activity = activity

    def box_name(self) -> str:
        return self.settings.hostname or socket.gethostname()

    @property
    def config(self) -> BackupConfig | None:
        return self.configuration.current

    @property
    def mirror(self) -> MirrorConfig | None:
        return self.mirroring.current

    @property
    def local_usage(self) -> LocalUsage:
        return self.mirroring.local_usage

    def secrets(self) -> tuple[str, ...]:
        """What must never leave the daemon in a log line, a record or a notification."""
        return self.configuration.secrets() + self.mirroring.secrets()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def require_config(self) -> BackupConfig:
        return self.configuration.require()

    def schedule(self) -> Schedule | None:
        """The automatic schedule, or None when backups are manual or not configured."""
        return self.configuration.schedule()

    def settings_unreadable(self, error: SettingsError | None) -> None:
        """Record (or, with None, clear) that the operator settings could not be read."""
        if error is not None and self.settings_error is None:
            self.settings_error_since = self.clock.now()
        self.settings_error = error
        self.publish_status()

    def require_settings(self) -> None:
        """Work waits until the operator's settings are read: hooks, access and limits live there."""
        error = self.settings_error
        if error is not None:
            raise RpcError(ErrorCode.CONFIG_UNREADABLE, settings_advice(error), settings_position(error))

    async def forget_configuration(self) -> None:
        """Back to unconfigured: no configuration, no mirror, nothing planned."""
        await self.configuration.save(None)
        await self.mirroring.save(None)  # the keys go; the bucket and what it holds stay
        self.next_run = None
        self.publish_status()

    def publish_status(self) -> None:
        self.changes.tell(Change.STATUS)

    def _publish_overview(self, _: None) -> None:
        overview = self.overview.record().to_wire()
        self.hub.publish("status.changed", overview)
        self.notify.status_changed(overview)

    async def _job_changed(self, job: Job) -> None:
        await self.keeper.save_job(job)
        self.changes.tell(Change.JOB_STARTED if job.finished is None else Change.JOB_FINISHED, job)
        self.publish_status()

