"""One exclusive job at a time: start, progress fan-out, cancel, wait, history, job logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

import msgpack
import trio

from backupctl.paths import printable, to_wire
from backupctl.protocol import ErrorCode, JobKind, JobState, RpcError, Trigger
from backupctl.records import JobError, JobRecord, Progress, RecordError, Requester
from backupd.errors import busy, invalid_params, not_found
from backupd.events import EventHub

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25
HISTORY_LIMIT = 200
LOG_LIMIT = 200
LOG_LINE_LIMIT = 500
# The daemon's own upkeep gives way to what a person asks for; it runs again later. The mirror,
# whoever asked for it, gives way to any other job: work on this box never waits on the network.
MAINTENANCE_KINDS = frozenset({JobKind.CHECK, JobKind.PRUNE})


class LogLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @classmethod
    def of(cls, name: str) -> LogLevel:
        """The level of a Python or borg level name (DEBUG, INFO, WARNING, ERROR, CRITICAL)."""
        name = name.upper()
        if name in ("ERROR", "CRITICAL"):
            return cls.ERROR
        return cls.WARNING if name == "WARNING" else cls.INFO


@dataclass
class LogLine:
    time: float
    level: str
    message: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LogLine:
        return cls(time=record["time"], level=record["level"], message=record["message"])


@dataclass
class Job:
    id: str
    kind: JobKind
    trigger: Trigger
    started: float
    state: JobState = JobState.RUNNING
    finished: float | None = None
    progress: Progress = field(default_factory=Progress)
    result: Any = None
    error: dict[str, Any] | None = None  # an RpcError's wire map
    requested_by: dict[str, Any] | None = None
    log: list[LogLine] = field(default_factory=list)
    dry_run: bool = False  # a restore that only says what it would change
    gave_way_to: str | None = None  # the id of the job that stopped this one; not saved

    def record(self) -> JobRecord:
        """The record of lists and notifications, without the log: that comes with the `job` method."""
        return JobRecord(
            id=self.id, kind=self.kind, trigger=self.trigger, state=self.state, started=self.started,
            finished=self.finished, progress=self.progress, result=self.result,
            error=JobError.from_wire(self.error) if self.error is not None else None,
            requested_by=Requester.from_wire(self.requested_by) if self.requested_by is not None else None,
            dry_run=self.dry_run,
        )

    def to_record(self) -> dict[str, Any]:
        """The job's record as a wire map."""
        return self.record().to_wire()

    def to_full_record(self) -> dict[str, Any]:
        # By hand: asdict() would deep-copy every line, slow on the event loop for a history of long logs.
        log = [{"time": line.time, "level": line.level, "message": line.message} for line in self.log]
        return {**self.to_record(), "log": log}

    def add_log(self, line: LogLine) -> None:
        """Keep the newest LOG_LIMIT lines, each at most LOG_LINE_LIMIT characters."""
        if len(line.message) > LOG_LINE_LIMIT:
            line.message = line.message[: LOG_LINE_LIMIT - 3] + "..."
        self.log.append(line)
        del self.log[:-LOG_LIMIT]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        fields["kind"], fields["trigger"] = JobKind(record["kind"]), Trigger(record["trigger"])
        fields["state"] = JobState(record.get("state", JobState.RUNNING))
        fields["progress"] = _saved_progress(record.get("progress") or {})
        fields["log"] = [LogLine.from_record(line) for line in record.get("log") or ()]
        return cls(**fields)


def _saved_progress(saved: dict[str, Any]) -> Progress:
    """The progress a saved record holds; one of another shape is kept as the map it was."""
    try:
        return Progress.from_wire(saved)
    except RecordError:
        return Progress(absent=frozenset(Progress.__dataclass_fields__), extra=saved)


WriteLog = Callable[[str, str], None]
_job_log: ContextVar[WriteLog | None] = ContextVar("job_log", default=None)


def job_log() -> WriteLog | None:
    """Where the calling task writes lines about the job it works for: (level, message); None outside a job."""
    return _job_log.get()


class JobLogHandler(logging.Handler):
    """The daemon's own log records, written while a task works for a job, go into that job's log too."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        write = _job_log.get()
        if write is None:
            return
        try:
            write(record.levelname, record.getMessage())
        except Exception:
            self.handleError(record)


ReportProgress = Callable[[Progress], None]
JobWork = Callable[[Job, ReportProgress], Awaitable[Any]]
JobChanged = Callable[[Job], Awaitable[None]]


class JobRunner:
    def __init__(
        self,
        hub: EventHub,
        history: list[Job],
        on_change: JobChanged,
        now: Callable[[], float] = time.time,
        redact: Callable[[str], str] = str,
    ) -> None:
        """``redact`` takes the secrets out of every line before it goes into a job's log."""
        self._hub = hub
        self._now = now
        self._redact = redact
        self._history: list[Job] = []
        self._on_change = on_change
        self._nursery: trio.Nursery | None = None
        self._done: dict[str, trio.Event] = {}
        self._cancel_scopes: dict[str, trio.CancelScope] = {}
        self._stop_reasons: dict[str, str] = {}
        self._next_id = 1
        self._finished_records: dict[str, dict[str, Any]] = {}
        self._listed_records: dict[str, tuple[dict[str, Any], int]] = {}
        self.current: Job | None = None
        self.restore_history(kept_history(history))

    def restore_history(self, kept: KeptHistory) -> None:
        """Take the history an earlier run saved; new job ids continue after it. Its finished
        jobs' records are built before serving (by kept_history, in a worker thread at start):
        no page or save builds a whole history in one step."""
        self._history = list(kept.jobs)
        self._next_id = max((int(job.id) for job in self._history if job.id.isdigit()), default=0) + 1
        self._listed_records = dict(kept.listed_records)
        self._finished_records = dict(kept.full_records)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, kind: JobKind | str, trigger: Trigger | str, work: JobWork,
              requested_by: dict[str, Any] | None = None, dry_run: bool = False) -> Job:
        """Start work as a job now, or raise busy when another job runs.

        A manual job stops automatic upkeep (check, prune) that is running, any job stops a
        running mirror, and it starts once the stopped job has ended. requested_by names the
        client that asked for it (uid, pid, command); None for the daemon's own jobs.
        """
        previous = self.current
        if previous is not None and not _gives_way(previous, JobKind(kind), Trigger(trigger)):
            raise busy(previous.to_record())
        assert self._nursery is not None, "JobRunner.run() must be started first"
        job = Job(id=str(self._next_id), kind=JobKind(kind), trigger=Trigger(trigger), started=self._now(),
                  requested_by=requested_by, dry_run=dry_run)
        if previous is not None:
            previous.gave_way_to = job.id
            self._stop_reasons[previous.id] = _gave_way_reason(previous, job)
            self._cancel_scopes[previous.id].cancel()
        self._next_id += 1
        self.current = job
        self._done[job.id] = trio.Event()
        self._cancel_scopes[job.id] = trio.CancelScope()
        self._history.insert(0, job)
        del self._history[HISTORY_LIMIT:]
        self._nursery.start_soon(self._run_job, job, work, previous)
        self._hub.publish("job.started", job.to_record())
        return job

    def start_after_job(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run work that need not hold up the job's answer (cleaning up after it) beside the jobs."""
        assert self._nursery is not None, "JobRunner.run() must be started first"
        self._nursery.start_soon(work)

    async def wait(self, job: Job) -> Job:
        done = self._done.get(job.id)
        if done is not None:
            await done.wait()
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.find(job_id)
        scope = self._cancel_scopes.get(job_id)
        if scope is not None:
            scope.cancel()
        return job

    def find(self, job_id: str) -> Job:
        for job in self._history:
            if job.id == job_id:
                return job
        raise not_found(f"job {job_id!r}")

    def recent(self, limit: int) -> list[Job]:
        return self._history[:limit]

    def page(self, after: str | None, limit: int, max_bytes: int) -> tuple[list[dict[str, Any]], str | None]:
        """The records of at most ``limit`` jobs, newest first, after the job ``after`` (from
        the newest when None), taking at most ``max_bytes`` packed; and the cursor of the next
        page, None on the last."""
        start = 0
        if after is not None:
            start = next((at + 1 for at, job in enumerate(self._history) if job.id == after), -1)
            if start < 0:
                raise invalid_params("cursor", "cursor must be one a previous answer gave")
        records: list[dict[str, Any]] = []
        size = 0
        for job in self._history[start:start + limit]:
            record, length = self._listed_record(job)
            if records and size + length > max_bytes:
                break
            records.append(record)
            size += length
        more = start + len(records) < len(self._history)
        return records, self._history[start + len(records) - 1].id if more and records else None

    def _listed_record(self, job: Job) -> tuple[dict[str, Any], int]:
        """A job's record for lists and its packed size; a finished job's is built only once."""
        if job.finished is None:
            record = job.to_record()
            return record, _packed_size(record)
        listed = self._listed_records.get(job.id)
        if listed is None:
            record = job.to_record()
            listed = self._listed_records[job.id] = (record, _packed_size(record))
            if len(self._listed_records) > 2 * HISTORY_LIMIT:
                kept = {job.id for job in self._history}
                self._listed_records = {key: value for key, value in self._listed_records.items() if key in kept}
        return listed

    def _keep_finished_records(self, job: Job) -> None:
        """Build a finished job's records once, as it ends: lists and saves of the history then
        only gather them."""
        if job.finished is not None:
            self._listed_record(job)
            self._finished_records[job.id] = job.to_full_record()
            if len(self._finished_records) > 2 * HISTORY_LIMIT:
                self.history_records()

    def history_records(self) -> list[dict[str, Any]]:
        """Full records of the kept history, to save; a finished job's record is built only once."""
        records = []
        cache: dict[str, dict[str, Any]] = {}
        for job in self._history:
            if job.finished is None:
                records.append(job.to_full_record())
                continue
            record = self._finished_records.get(job.id) or job.to_full_record()
            cache[job.id] = record
            records.append(record)
        self._finished_records = cache
        return records

    def _write_log(self, job: Job, level: str, message: str) -> None:
        text = self._redact(printable(message))
        job.add_log(LogLine(time=self._now(), level=str(LogLevel.of(level)), message=text))

    async def _run_job(self, job: Job, work: JobWork, previous: Job | None) -> None:
        # Every task this one starts inherits it: borg runs and the daemon's log records land in this job's log.
        _job_log.set(partial(self._write_log, job))
        log.info("job %s started: %s (%s)", job.id, job.kind, job.trigger)
        last_published = -PROGRESS_INTERVAL

        def report(progress: Progress) -> None:
            nonlocal last_published
            job.progress = progress
            now = trio.current_time()
            if now - last_published >= PROGRESS_INTERVAL:
                last_published = now
                self._hub.publish("job.progress", job.to_record())

        try:
            with self._cancel_scopes[job.id]:
                await self._on_change(job)
                if previous is not None:
                    await self.wait(previous)
                job.result = await work(job, report)
                job.state = JobState.SUCCEEDED
        except RpcError as error:
            job.state = JobState.FAILED
            job.error = error.to_wire()
        except ExceptionGroup as group:
            job.state = JobState.FAILED
            job.error = _first_rpc_error(group, job).to_wire()
        except Exception:
            log.exception("job %s (%s) failed on a bug", job.id, job.kind)
            job.state = JobState.FAILED
            job.error = RpcError(ErrorCode.INTERNAL, f"{job.kind} failed on an internal error").to_wire()
        finally:
            stop_reason = self._stop_reasons.pop(job.id, None)
            if job.state == JobState.RUNNING and self._cancel_scopes[job.id].cancel_called:
                job.state = JobState.CANCELLED
                job.error = RpcError(ErrorCode.CANCELLED, stop_reason or f"The {job.kind} was cancelled").to_wire()
            elif job.state == JobState.RUNNING:
                job.state = JobState.FAILED
                job.error = interrupted_error(job).to_wire()
            job.finished = self._now()
            _log_outcome(job)
            self._keep_finished_records(job)
            if self.current is job:
                self.current = None
            with trio.CancelScope(shield=True):
                await self._on_change(job)
            self._hub.publish("job.finished", self._listed_record(job)[0])
            self._cancel_scopes.pop(job.id, None)
            self._done.pop(job.id).set()


def _gives_way(running: Job, kind: JobKind, trigger: Trigger) -> bool:
    if running.kind == JobKind.MIRROR:
        return kind != JobKind.MIRROR
    return running.kind in MAINTENANCE_KINDS and running.trigger != Trigger.MANUAL and trigger == Trigger.MANUAL


def _gave_way_reason(stopped: Job, job: Job) -> str:
    who = f"The {stopped.kind}" if stopped.trigger == Trigger.MANUAL else f"The automatic {stopped.kind}"
    to = f"the {job.kind} asked for as job {job.id}" if job.trigger == Trigger.MANUAL else \
        f"the automatic {job.kind} (job {job.id})"
    return f"{who} gave way to {to}; it runs again later"


def _log_outcome(job: Job) -> None:
    if job.error is None:
        log.info("job %s %s: %s", job.id, job.state, job.kind)
        return
    level = logging.INFO if job.state == JobState.CANCELLED else logging.ERROR
    log.log(level, "job %s %s: %s: %s: %s", job.id, job.state, job.kind, job.error["code"], job.error["message"])


def interrupted_error(job: Job) -> RpcError:
    return RpcError(ErrorCode.INTERRUPTED, f"The {job.kind} was interrupted: the daemon stopped while it ran")


def _first_rpc_error(group: ExceptionGroup, job: Job) -> RpcError:
    """The typed error inside a nursery's exception group, or internal when there is none."""
    matched, _ = group.split(RpcError)
    if matched is not None:
        leaf: BaseException = matched
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        return leaf  # type: ignore[return-value]
    log.error("job %s (%s) failed on a bug", job.id, job.kind, exc_info=group)
    return RpcError(ErrorCode.INTERNAL, f"{job.kind} failed on an internal error")


@dataclass(frozen=True)
class KeptHistory:
    """A saved job history, newest first, with the records of its finished jobs built."""

    jobs: tuple[Job, ...]
    listed_records: dict[str, tuple[dict[str, Any], int]]
    full_records: dict[str, dict[str, Any]]


def kept_history(history: list[Job]) -> KeptHistory:
    """The history a job runner keeps, its records built: a couple of hundred jobs' worth of
    work, done in a worker thread at start."""
    jobs = tuple(history[:HISTORY_LIMIT])
    listed_records: dict[str, tuple[dict[str, Any], int]] = {}
    full_records: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if job.finished is not None:
            record = job.to_record()
            listed_records[job.id] = (record, _packed_size(record))
            full_records[job.id] = job.to_full_record()
    return KeptHistory(jobs, listed_records, full_records)


def _packed_size(record: dict[str, Any]) -> int:
    return len(msgpack.packb(to_wire(record), use_bin_type=True, default=repr))
