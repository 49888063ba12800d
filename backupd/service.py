"""The daemon's state in one place: settings, configuration, repository facts, jobs, events."""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import datetime
from itertools import takewhile
from pathlib import Path
from typing import Any

import trio

from backupctl.paths import printable
from backupctl.protocol import ErrorCode, RpcError
from backupd.borg.commands import BorgCommand
from backupd.borg.errors import BorgFailed
from backupd.borg.log_json import BorgEvent, LogMessage
from backupd.borg.runner import BorgResult, run_borg
from backupd.borg.transactions import repository_marker
from backupd.clock import SystemWallClock, WallClock, local_zone
from backupd.config import BackupConfig
from backupd.errors import not_configured
from backupd.events import EventHub
from backupd.jobs import HISTORY_LIMIT, Job, JobRunner, JobState, LogLevel, interrupted_error, job_log
from backupd.mirror.config import MirrorConfig
from backupd.mirror.state import LocalUsage, MirrorState, mirror_record
from backupd.notify import OperatorNotifier
from backupd.redaction import redact
from backupd.schedule import Schedule, interval, parse_schedule
from backupd.settings import Settings, SettingsError
from backupd.ssh import SSH_FOLDER, SshIdentity, remote_location
from backupd.ssh_probe import diagnose
from backupd.state import Problem, RepositoryState
from backupd.store import Store, StoreError

log = logging.getLogger(__name__)

# borg's words for a link that failed; ssh itself is asked which way it failed.
_MAYBE_SSH_FAILURES = frozenset({ErrorCode.REPOSITORY_UNREACHABLE, ErrorCode.AUTH_FAILED, ErrorCode.HOST_KEY_CHANGED})
CONFIG_DOCUMENT = "config"
STATE_DOCUMENT = "state"
JOBS_DOCUMENT = "jobs"
MIRROR_DOCUMENT = "mirror"
MIRROR_STATE_DOCUMENT = "mirror-state"


class Service:
    def __init__(self, settings: Settings, store: Store, clock: WallClock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or SystemWallClock()
        self.zone = local_zone(settings.timezone)
        self.next_run: float | None = None
        self.config_listeners: list[Callable[[], None]] = []
        self.job_listeners: list[Callable[[], None]] = []
        self._overdue_memo: tuple[tuple[Any, ...], float | None] = ((), None)
        self.hub = EventHub()
        self.config: BackupConfig | None = None
        self.mirror: MirrorConfig | None = None
        self.mirror_state = MirrorState()
        self.local_usage = LocalUsage()
        self._off_site_memo: tuple[tuple[Any, Any] | None, int] = (None, 0)
        self._schedule: Schedule | None = None
        self.repository = RepositoryState()
        self.repository_lock = trio.Lock()
        self.repository_marker: tuple[str, ...] | None = None
        self.jobs = JobRunner(self.hub, [], self._job_changed, self.clock.now, self.redact)
        self.notify = OperatorNotifier(
            lambda: self.settings.notify, self.box_name, self.secrets, self.publish_status, self.clock.now
        )
        self.storage_problem: Problem | None = None
        self.settings_error: SettingsError | None = None
        self._settings_error_since = 0.0
        self.restore_cleaned_up = _already_set()
        self.activity = "starting"

    def load(self) -> None:
        """Read what an earlier run saved. A document that cannot be read is set aside and
        reported; the daemon starts with what it can trust and the repository rebuilds the rest."""
        unreadable: list[str] = []
        self._set_config(self._load_trusted(CONFIG_DOCUMENT, BackupConfig.from_record, unreadable))
        state = self._load_trusted(STATE_DOCUMENT, RepositoryState.from_record, unreadable)
        self.repository = state or RepositoryState()
        history = self._load_trusted(JOBS_DOCUMENT, _jobs_from_records, unreadable)
        self.jobs.restore_history(history or [])
        self.mirror = self._load_trusted(MIRROR_DOCUMENT, MirrorConfig.from_record, unreadable)
        self.mirror_state = self._load_trusted(MIRROR_STATE_DOCUMENT, MirrorState.from_record, unreadable) or MirrorState()
        if CONFIG_DOCUMENT in unreadable:
            message = "The saved configuration could not be read and was set aside; configure backups again"
            problem = self.problem_from("config_unreadable", message, "configure")
            self.repository = replace(self.repository, problem=problem)
        elif unreadable:
            message = f"Saved {' and '.join(unreadable)} could not be read and was set aside; reading the repository again"
            self.repository = replace(self.repository, problem=self.problem_from("state_unreadable", message, "refresh"))
        interrupted = None
        for job in self.jobs.recent(1):
            if job.state == JobState.RUNNING:
                job.state = JobState.FAILED
                job.error = interrupted_error(job).to_wire()
                job.finished = job.finished or self.clock.now()
                interrupted = job
        self.notify.seed(self.jobs.recent(HISTORY_LIMIT), self.overview(), interrupted)

    def _load_trusted(self, name: str, parse: Callable[[Any], Any], unreadable: list[str]) -> Any:
        try:
            document = self.store.load(name)
            return parse(document) if document is not None else None
        except (StoreError, KeyError, TypeError, ValueError, AttributeError) as error:
            aside = self.store.set_aside(name, self.clock.now())
            log.error("%s could not be read (%s); set aside as %s", name, error, aside)
            unreadable.append(name)
            return None

    def box_name(self) -> str:
        return self.settings.hostname or socket.gethostname()

    def secrets(self) -> tuple[str, ...]:
        """What must never leave the daemon in a log line, a record or a notification."""
        passphrase = (self.config.passphrase,) if self.config else ()
        return passphrase + (self.mirror.secrets() if self.mirror else ())

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def require_config(self) -> BackupConfig:
        if self.config is None:
            raise not_configured()
        return self.config

    def overview(self) -> dict[str, Any]:
        repository = self.repository
        running = self.jobs.current
        if self.config is None:
            state = "unconfigured"
        else:
            state = "running" if running is not None else "idle"
        last = repository.last_snapshot
        return {
            "state": state,
            "repository": self.config.repository if self.config else None,
            "schedule": self.config.schedule if self.config else None,
            "automatic": self.schedule() is not None,
            "next_run": self.next_run,
            "last_snapshot": {
                "name": last.name,
                "time": last.time,
                "duration": last.duration,
                "files": last.files,
                "original_size": last.original_size,
                "deduplicated_size": last.deduplicated_size,
            }
            if last
            else None,
            "snapshot_count": repository.snapshot_count,
            "total_size": repository.total_size,
            "file_count": repository.file_count,
            "problem": self.problem(),
            "last_check": asdict(repository.last_check) if repository.last_check else None,
            "host_key": repository.host_key,
            "retention": self.retention_off_reason() or "old snapshots are pruned after automatic ones",
            "notify": self.notify.health(),
            "local_size": self.local_usage.size if self.local_usage.measured else None,
            "mirror": self.mirror_overview(),
            "job": running.to_record() if running else None,
        }

    def mirror_overview(self) -> dict[str, Any] | None:
        """The off-site mirror as the overview shows it; None when there is none."""
        if self.mirror is None:
            return None
        running = self.jobs.current
        return mirror_record(self.mirror, self.mirror_state, self._snapshots_not_off_site(), self.local_usage,
                             running=running is not None and running.kind == "mirror")

    def _snapshots_not_off_site(self) -> int:
        """Counted again only when the archives or what the last mirror copied change: status stays cheap."""
        mirrored, archives = self.mirror_state.mirrored_archives, self.repository.archives
        key, count = self._off_site_memo
        if key is None or key[0] is not mirrored or key[1] is not archives:
            names = frozenset(mirrored)
            count = sum(1 for archive in archives if archive.name not in names)
            self._off_site_memo = ((mirrored, archives), count)
        return count

    def retention_off_reason(self) -> str | None:
        """Why old snapshots are not pruned, or None when they are."""
        config = self.config
        if config is None:
            return "off: not configured"
        if self._schedule is None:
            return "off: snapshots are manual, and pruning follows automatic snapshots"
        if config.append_only:
            return "off: the server keeps this repository append-only; prune it on the server"
        if not any(config.keep.values()):
            return "off: no keep rule"
        return None

    def schedule(self) -> Schedule | None:
        """The automatic schedule, or None when backups are manual or not configured."""
        return self._schedule

    def overdue_at(self) -> float | None:
        """When the lack of a successful snapshot becomes a problem: two intervals after the last."""
        schedule = self.schedule()
        anchor = self.repository.last_success or self.repository.configured_at
        if schedule is None or anchor is None:
            return None
        key, deadline = self._overdue_memo
        if key != (schedule, anchor):
            usual = interval(schedule, anchor, self.zone)
            deadline = anchor + 2 * usual if usual else None
            self._overdue_memo = ((schedule, anchor), deadline)
        return deadline

    def settings_unreadable(self, error: SettingsError | None) -> None:
        """Record (or, with None, clear) that the operator settings could not be read."""
        if error is not None and self.settings_error is None:
            self._settings_error_since = time.time()
        self.settings_error = error
        self.publish_status()

    def require_settings(self) -> None:
        """Work waits until the operator's settings are read: hooks, access and limits live there."""
        error = self.settings_error
        if error is not None:
            raise RpcError(ErrorCode.CONFIG_UNREADABLE, _settings_advice(error), _position(error))

    def problem(self) -> dict[str, Any] | None:
        if (error := self.settings_error) is not None:
            return {"code": str(ErrorCode.CONFIG_UNREADABLE), "message": _settings_advice(error),
                    "since": self._settings_error_since, **_position(error)}
        for problem in (self.storage_problem, self.repository.problem, self.mirror_state.error):
            if problem is not None:
                return problem.to_wire()
        overdue_at = self.overdue_at()
        if overdue_at is None or self.clock.now() < overdue_at:
            return None
        last = self.repository.last_success
        when = datetime.fromtimestamp(last, self.zone).strftime("%Y-%m-%d %H:%M") if last else None
        message = f"No snapshot has succeeded since {when}" if when else "No snapshot has succeeded yet"
        return {"code": "overdue", "message": message, "since": overdue_at, "last_success": last}

    async def borg(
        self,
        command: BorgCommand,
        config: BackupConfig | None = None,
        on_event: Callable[[BorgEvent], None] | None = None,
        env: dict[str, str] | None = None,
        low_priority: bool = False,
        cwd: str | None = None,
        on_start: Callable[[int], None] | None = None,
        on_stdout: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> BorgResult:
        """Run one borg command against the configured (or the given) repository.

        ``low_priority`` runs borg under ``nice -n 19`` and ``ionice -c 3`` where those exist,
        so a long maintenance run leaves CPU and disk to the box's own services.
        """
        config = config or self.require_config()
        try:
            return await self._run_borg(command, config, on_event, env, low_priority, cwd, on_start, on_stdout)
        except BorgFailed as failure:
            if failure.code in _MAYBE_SSH_FAILURES:
                reason = await self._ssh_reason(config)
                if reason is not None:
                    raise RpcError(reason.code, self.redact(reason.message),
                                   {**failure.data, **reason.data,
                                    "ssh": [self.redact(line) for line in reason.data["ssh"]]}) from None
            raise
        finally:
            # What the repository looks like after the daemon's own work: a later change is someone else's.
            self.repository_marker = await trio.to_thread.run_sync(repository_marker, config.repository)

    async def _ssh_reason(self, config: BackupConfig) -> RpcError | None:
        """Why an SSH repository could not be used, found with ssh itself; None for a local one,
        or when ssh and borg answer there now."""
        server = remote_location(config.repository)
        if server is None:
            return None
        identity = await self.ensure_ssh_identity()
        return await trio.to_thread.run_sync(
            diagnose, identity, server, config.remote_path, self.settings.ssh_timeout, config.repository)

    async def _run_borg(
        self,
        command: BorgCommand,
        config: BackupConfig,
        on_event: Callable[[BorgEvent], None] | None,
        env: dict[str, str] | None,
        low_priority: bool,
        cwd: str | None,
        on_start: Callable[[int], None] | None,
        on_stdout: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> BorgResult:
        return await run_borg(
            command,
            borg=(*(_low_priority(self.settings.borg) if low_priority else self.settings.borg),
                  f"--lock-wait={self.settings.lock_wait}"),
            passphrase=config.passphrase,
            on_event=_logging_to_job(command, on_event),
            env={"BORG_BASE_DIR": str(self.borg_base_dir()), **await self._remote_env(config), **(env or {})},
            cwd=cwd,
            on_start=on_start,
            on_stdout=on_stdout,
        )

    @property
    def ssh(self) -> SshIdentity:
        return SshIdentity(self.settings.state_dir / SSH_FOLDER)

    async def ensure_ssh_identity(self) -> SshIdentity:
        identity = self.ssh
        comment = f"backupd@{self.settings.hostname or socket.gethostname()}"
        try:
            await trio.to_thread.run_sync(identity.ensure, comment)
        except OSError as error:
            problem = self._storage_problem(error)
            raise RpcError(problem.code, problem.message) from None
        return identity

    async def _remote_env(self, config: BackupConfig) -> dict[str, str]:
        if remote_location(config.repository) is None:
            return {}
        identity = await self.ensure_ssh_identity()
        env = {"BORG_RSH": identity.borg_rsh(self.settings.ssh_timeout)}
        if config.remote_path:
            env["BORG_REMOTE_PATH"] = config.remote_path
        return env

    def borg_base_dir(self) -> Path:
        """Where borg keeps its cache and security records for this daemon."""
        return self.settings.borg_base_dir or self.settings.state_dir / "borg"

    async def update_repository(self, **changes: Any) -> None:
        """Change what is known about the repository, persist it and tell subscribers."""
        self.repository = replace(self.repository, **changes)
        await self._persist(STATE_DOCUMENT, self.repository.to_record())
        self.publish_status()

    async def update_mirror_state(self, **changes: Any) -> None:
        self.mirror_state = replace(self.mirror_state, **changes)
        await self._persist(MIRROR_STATE_DOCUMENT, self.mirror_state.to_record())
        self.publish_status()

    async def save_mirror(self, mirror: MirrorConfig | None) -> None:
        """Persist the mirror's configuration (its secret only in the state folder), then adopt it."""
        try:
            if mirror is None:
                await trio.to_thread.run_sync(self.store.delete, MIRROR_DOCUMENT)
                await trio.to_thread.run_sync(self.store.delete, MIRROR_STATE_DOCUMENT)
            else:
                await self.store.save(MIRROR_DOCUMENT, mirror.to_record())
        except OSError as error:
            problem = self._storage_problem(error)
            raise RpcError(problem.code, problem.message) from None
        self.mirror = mirror
        if mirror is None:
            self.mirror_state = MirrorState()
        self.publish_status()

    async def _persist(self, name: str, document: Any) -> None:
        """Save a document; a failure (a full disk) is a problem to show, never a crash."""
        try:
            await self.store.save(name, document)
        except OSError as error:
            self.storage_problem = self._storage_problem(error)
            log.error("cannot save %s: %s", name, error)
            return
        self.storage_problem = None

    def _storage_problem(self, error: OSError) -> Problem:
        code = ErrorCode.DISK_FULL if error.errno == errno.ENOSPC else ErrorCode.STATE_UNWRITABLE
        message = f"The daemon cannot save its state in {self.settings.state_dir}: {error.strerror or error}"
        since = self.storage_problem.since if self.storage_problem else time.time()
        return Problem(code=str(code), message=message, since=since, operation="store")

    def problem_from(self, code: str, message: str, operation: str) -> Problem:
        current = self.repository.problem
        since = current.since if current and current.code == code else time.time()
        return Problem(code=code, message=printable(message), since=since, operation=operation)

    def _set_config(self, config: BackupConfig | None) -> None:
        self.config = config
        schedule = parse_schedule(config.schedule) if config else None
        self._schedule = schedule if schedule and schedule.automatic and config and config.sources else None

    async def save_config(self, config: BackupConfig | None) -> None:
        """Persist the configuration first, then adopt it: a configuration that could not be
        saved would be lost at the next start."""
        try:
            if config is None:
                await trio.to_thread.run_sync(self.store.delete, CONFIG_DOCUMENT)
            else:
                await self.store.save(CONFIG_DOCUMENT, config.to_record())
        except OSError as error:
            problem = self._storage_problem(error)
            raise RpcError(problem.code, problem.message) from None
        self._set_config(config)
        for listener in self.config_listeners:
            listener()

    def publish_status(self) -> None:
        overview = self.overview()
        self.hub.publish("status.changed", overview)
        self.notify.status_changed(overview)

    async def _job_changed(self, job: Job) -> None:
        await self._persist(JOBS_DOCUMENT, self.jobs.history_records())
        if job.finished is None:
            self.notify.job_started(job.to_record())
        else:
            self.notify.job_finished(job.to_record(), self.overview())
        self.publish_status()
        if job.finished is not None:
            for listener in self.job_listeners:
                listener()


def _logging_to_job(
    command: BorgCommand, on_event: Callable[[BorgEvent], None] | None
) -> Callable[[BorgEvent], None] | None:
    """The log of the job that runs borg, if any, says which borg command ran, then its warnings and errors."""
    write_log = job_log()
    if write_log is None:
        return on_event
    write_log("INFO", "running borg " + " ".join(takewhile(lambda arg: not arg.startswith("-"), command.args)))

    def on_borg_event(event: BorgEvent) -> None:
        if isinstance(event, LogMessage) and LogLevel.of(event.levelname) != LogLevel.INFO:
            write_log(event.levelname, event.message)
        if on_event is not None:
            on_event(event)

    return on_borg_event


def _settings_advice(error: SettingsError) -> str:
    return (f"The daemon's settings are broken, so it does no work until they are fixed: {error}. "
            "Correct the file, then run `systemctl reload backupd`")


def _position(error: SettingsError) -> dict[str, int]:
    return {"line": error.line, "column": error.column} if error.line is not None else {}


def _already_set() -> trio.Event:
    event = trio.Event()
    event.set()
    return event


def _jobs_from_records(records: list[dict[str, Any]]) -> list[Job]:
    return [Job.from_record(record) for record in records]


def _low_priority(borg: tuple[str, ...]) -> tuple[str, ...]:
    """The borg argv prefix behind the idle-priority tools this system has."""
    prefix: tuple[str, ...] = ()
    if shutil.which("nice"):
        prefix += ("nice", "-n", "19")
    if shutil.which("ionice"):
        prefix += ("ionice", "-c", "3", "-t")
    return (*prefix, *borg)
