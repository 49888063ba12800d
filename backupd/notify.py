"""Telling the operator: which events happened, and their delivery to a command, a webhook and a
healthcheck URL by one background task, so a job never waits for a notification.

Events: ``failure`` (a snapshot, restore or check failed or was interrupted; the same failure
again is not repeated until that kind of job succeeds), ``recovery`` (the first success after a
failure, or the end of a problem that was notified), ``overdue`` and ``problem`` (a new problem
code in the overview; one a failure already told about is not repeated), ``success`` (with
``on_success``). The healthcheck URL follows snapshots only: ``/start``, then the URL itself or
``/fail``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import trio

from backupctl.protocol import JobState, RpcError
from backupctl.records import NotifyHealth
from backupd.hooks import run_hook
from backupd.jobs import Job
from backupd.redaction import redact, redact_value
from backupd.settings import HookCommand, Notify

log = logging.getLogger(__name__)

WATCHED_KINDS = frozenset({"snapshot", "restore", "check", "mirror"})
OVERDUE = "overdue"
QUEUE_SIZE = 100
RETRY_FIRST_DELAY = 2.0
MAX_RESPONSE_BYTES = 65536


class Event(StrEnum):
    FAILURE = "failure"
    RECOVERY = "recovery"
    OVERDUE = "overdue"
    PROBLEM = "problem"
    SUCCESS = "success"


class Signal(StrEnum):
    """A healthcheck ping: appended to the base URL."""

    START = "/start"
    SUCCESS = ""
    FAIL = "/fail"


@dataclass(frozen=True)
class Notice:
    """One event for the command and the webhook. Every field is free of secrets."""

    event: Event
    box: str
    job: dict[str, Any] | None
    problem: dict[str, Any] | None
    status: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"event": str(self.event), "box": self.box, "job": self.job, "problem": self.problem,
                "status": self.status}

    def environment(self) -> dict[str, str]:
        job = self.job or {}
        problem = self.problem or {}
        return {
            "BACKUPD_EVENT": str(self.event),
            "BACKUPD_BOX": self.box,
            "BACKUPD_JOB_ID": str(job.get("id") or ""),
            "BACKUPD_JOB_KIND": str(job.get("kind") or ""),
            "BACKUPD_JOB_STATE": str(job.get("state") or ""),
            "BACKUPD_PROBLEM_CODE": str(problem.get("code") or ""),
            "BACKUPD_PROBLEM_MESSAGE": str(problem.get("message") or ""),
        }


@dataclass(frozen=True)
class Ping:
    """One healthcheck signal about a snapshot, with a line of text for the check's log."""

    signal: Signal
    text: str


Outgoing = Notice | Ping


class EventWatcher:
    """Decides which events the changes of jobs and of the overview are. Pure: no I/O."""

    def __init__(self, box: Callable[[], str], on_success: Callable[[], bool]) -> None:
        self._box = box
        self._on_success = on_success
        self._failing: dict[str, str] = {}
        self._problem_code: str | None = None
        self._problem_notified = False

    def seed(self, history: Sequence[Job], overview: Mapping[str, Any]) -> None:
        """Start from what an earlier run knew: failures not yet recovered, the current problem
        (taken as told already, so a restart repeats nothing)."""
        for job in reversed(history):
            if job.kind not in WATCHED_KINDS or job.finished is None:
                continue
            if job.state == JobState.FAILED and job.error:
                self._failing[job.kind] = job.error.get("code", "")
            elif job.state == JobState.SUCCEEDED:
                self._failing.pop(job.kind, None)
        problem = overview.get("problem")
        self._problem_code = problem["code"] if problem else None
        self._problem_notified = problem is not None

    def job_started(self, job: Mapping[str, Any]) -> list[Outgoing]:
        if job["kind"] != "snapshot":
            return []
        return [Ping(Signal.START, f"snapshot job {job['id']} started ({job['trigger']})")]

    def job_finished(self, job: Mapping[str, Any], overview: Mapping[str, Any]) -> list[Outgoing]:
        """Call before the overview without this job is published, so its problem is judged with the job."""
        kind, state = job["kind"], job["state"]
        error = job.get("error") or {}
        outgoing: list[Outgoing] = list(self._healthcheck_end(job))
        watched = kind in WATCHED_KINDS
        covered: str | None = None
        recovered = False
        if watched and state == JobState.FAILED:
            covered = error.get("code")
            if self._failing.get(kind) != covered:
                outgoing.append(self._notice(Event.FAILURE, overview, job))
            self._failing[kind] = covered or ""
        elif watched and state == JobState.SUCCEEDED:
            recovered = self._failing.pop(kind, None) is not None
        outgoing += self._new_problem(overview, covered)
        if state == JobState.SUCCEEDED and self._problem_notified and overview.get("problem") is None:
            self._problem_notified = False
            recovered = True
        if recovered:
            outgoing.append(self._notice(Event.RECOVERY, overview, job))
        elif watched and state == JobState.SUCCEEDED and self._on_success():
            outgoing.append(self._notice(Event.SUCCESS, overview, job))
        return outgoing

    def status_changed(self, overview: Mapping[str, Any]) -> list[Outgoing]:
        if overview.get("job") is not None:
            return []  # judged when the job ends, together with its outcome
        outgoing = self._new_problem(overview, covered=None)
        if self._problem_notified and overview.get("problem") is None:
            self._problem_notified = False
            outgoing.append(self._notice(Event.RECOVERY, overview, None))
        return outgoing

    def interrupted_at_start(self, job: Job, overview: Mapping[str, Any]) -> list[Outgoing]:
        """A job the daemon died in (found running at start) is a failure."""
        if job.kind not in WATCHED_KINDS:
            return []
        self._failing[job.kind] = (job.error or {}).get("code", "")
        record = job.to_record()
        return [*self._healthcheck_end(record), self._notice(Event.FAILURE, overview, record)]

    def _new_problem(self, overview: Mapping[str, Any], covered: str | None) -> list[Outgoing]:
        problem = overview.get("problem")
        code = problem["code"] if problem else None
        previous, self._problem_code = self._problem_code, code
        if code is None or code == previous or code == covered:
            return []
        self._problem_notified = True
        event = Event.OVERDUE if code == OVERDUE else Event.PROBLEM
        return [self._notice(event, overview, None)]

    def _healthcheck_end(self, job: Mapping[str, Any]) -> list[Outgoing]:
        if job["kind"] != "snapshot" or job["state"] == JobState.CANCELLED:
            return []
        error = job.get("error")
        if error:
            return [Ping(Signal.FAIL, f"snapshot job {job['id']} {job['state']}: {error['code']}: {error['message']}")]
        return [Ping(Signal.SUCCESS, f"snapshot job {job['id']} succeeded")]

    def _notice(self, event: Event, overview: Mapping[str, Any], job: Mapping[str, Any] | None) -> Notice:
        return Notice(event, self._box(), dict(job) if job else None, overview.get("problem"), dict(overview))


@dataclass
class Health:
    """How delivery went, per channel: the newest failure of each, and the last success."""

    failing: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    last_sent: float | None = None

    def record(self) -> NotifyHealth:
        return NotifyHealth(ok=not self.failing, last_error=self.last_error, last_sent=self.last_sent)


class DeliveryFailed(Exception):
    """One attempt to deliver failed; the message says why, without secrets."""


class OperatorNotifier:
    """Queues what to tell as jobs and the overview change; `run` delivers it in order, each
    notice to its channels side by side."""

    def __init__(
        self,
        settings: Callable[[], Notify],
        box: Callable[[], str],
        secrets: Callable[[], Sequence[str]],
        on_health_change: Callable[[], None],
        now: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._on_health_change = on_health_change
        self._now = now
        self._watcher = EventWatcher(box, lambda: self._settings().on_success)
        self._health = Health()
        self._send, self._receive = trio.open_memory_channel[Outgoing](QUEUE_SIZE)

    def seed(self, history: Sequence[Job], overview: Mapping[str, Any], interrupted: Job | None) -> None:
        """At start: what an earlier run knew, and the job it died in, if any."""
        self._watcher.seed(history, overview)
        if interrupted is not None:
            self._queue(self._watcher.interrupted_at_start(interrupted, overview))

    def job_started(self, job: Mapping[str, Any]) -> None:
        self._queue(self._watcher.job_started(job))

    def job_finished(self, job: Mapping[str, Any], overview: Mapping[str, Any]) -> None:
        self._queue(self._watcher.job_finished(job, overview))

    def status_changed(self, overview: Mapping[str, Any]) -> None:
        self._queue(self._watcher.status_changed(overview))

    def health(self) -> NotifyHealth | None:
        """The overview's `notify` field: None when no notification is configured."""
        settings = self._settings()
        if not (settings.command or settings.webhook or settings.healthcheck):
            return None
        return self._health.record()

    def _queue(self, outgoing: Sequence[Outgoing]) -> None:
        """Never waits: when the queue is full the notice is dropped, and that is reported."""
        settings = self._settings()
        for item in outgoing:
            wanted = settings.healthcheck if isinstance(item, Ping) else settings.command or settings.webhook
            if not wanted:
                continue
            try:
                self._send.send_nowait(self._redacted(item))
            except trio.WouldBlock:
                # Not _failed: publishing the overview from here could come back to this queue.
                self._record_failure("queue", f"{QUEUE_SIZE} notifications are waiting; newer ones are dropped")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for item in self._receive:
            settings = self._settings()
            async with trio.open_nursery() as nursery:
                for channel, send in self._channels(item, settings):
                    nursery.start_soon(self._deliver, channel, send, settings.retries)

    def _channels(self, item: Outgoing, settings: Notify) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        if isinstance(item, Ping):
            if settings.healthcheck is None:
                return []
            url = settings.healthcheck.rstrip("/") + item.signal
            return [("healthcheck", lambda: _post(url, item.text.encode(), "text/plain", settings.timeout))]
        channels: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if settings.command is not None:
            command = settings.command
            channels.append(("command", lambda: _run_command(command, item.environment(), settings.timeout)))
        if settings.webhook is not None:
            url, body = settings.webhook, json.dumps(item.body()).encode()
            channels.append(("webhook", lambda: _post(url, body, "application/json", settings.timeout)))
        return channels

    async def _deliver(self, channel: str, send: Callable[[], Awaitable[None]], retries: int) -> None:
        for attempt in range(retries + 1):
            try:
                await send()
            except DeliveryFailed as failure:
                if attempt == retries:
                    self._failed(channel, str(failure))
                    return
                await trio.sleep(RETRY_FIRST_DELAY * 2**attempt)
            else:
                self._sent(channel)
                return

    def _sent(self, channel: str) -> None:
        self._health.failing.pop(channel, None)
        self._health.failing.pop("queue", None)
        self._health.last_sent = self._now()
        self._on_health_change()

    def _failed(self, channel: str, message: str) -> None:
        self._record_failure(channel, message)
        self._on_health_change()

    def _record_failure(self, channel: str, message: str) -> None:
        text = f"{channel}: {message}"
        if self._health.failing.get(channel) != text:
            log.warning("notification not delivered: %s", text)
        self._health.failing[channel] = text
        self._health.last_error = text

    def _redacted(self, item: Outgoing) -> Outgoing:
        secrets = [secret for secret in self._secrets() if secret]
        if isinstance(item, Ping):
            return Ping(item.signal, redact(item.text, secrets))
        return replace(item, job=redact_value(item.job, secrets), problem=redact_value(item.problem, secrets),
                       status=redact_value(item.status, secrets))


async def _run_command(command: HookCommand, env: dict[str, str], timeout: float) -> None:
    try:
        await run_hook("notify", command, env, timeout)
    except RpcError as error:
        raise DeliveryFailed(error.message) from None


async def _post(url: str, body: bytes, content_type: str, timeout: float) -> None:
    """POST body to url in a worker thread; give up after timeout seconds whatever the server does."""
    with trio.move_on_after(timeout) as scope:
        await trio.to_thread.run_sync(_post_blocking, url, body, content_type, timeout, abandon_on_cancel=True)
    if scope.cancelled_caught:
        raise DeliveryFailed(f"no answer within {timeout} s")


def _post_blocking(url: str, body: bytes, content_type: str, timeout: float) -> None:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, "User-Agent": "backupd"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        raise DeliveryFailed(f"the server answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        raise DeliveryFailed(f"cannot reach the server: {getattr(reason, 'strerror', None) or reason}") from None
    except (TimeoutError, OSError) as error:
        raise DeliveryFailed(f"the request failed: {getattr(error, 'strerror', None) or error}") from None
