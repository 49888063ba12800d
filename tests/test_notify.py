"""Notifications: which events happen, and their delivery by a real daemon to a real local HTTP
server and a real command."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from backupd.jobs import Job
from backupd.notify import EventWatcher, Notice, Ping, Signal
from backupd.settings import SettingsError, parse_settings
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import wait_for

ENV_WRITER = """\
import json, os, sys
with open(sys.argv[1], "a") as file:
    file.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("BACKUPD_")}) + "\\n")
"""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 in a thread that records every request, then answers
    `status` after `delay` seconds (cut short when the test ends)."""

    status: int = 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    answered: int = 0
    closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Received(self.command, self.path, body, time.time()))
                receiver.closing.wait(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered += 1

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Received]:
        return wait_for(lambda: (found := [r for r in self.requests if r.path == path])[count - 1:] and found,
                        timeout=timeout)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


StartDaemon = Callable[[str], DaemonProcess]


@pytest.fixture
def notifying_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """start(notify_table) -> a running backupd whose settings end with that TOML text."""
    started: list[DaemonProcess] = []

    def start(tables: str) -> DaemonProcess:
        settings = tmp_path / "backupd.toml"
        settings.write_text(f'borg_base_dir = "{tmp_path / "borg-base"}"\nhostname = "testbox"\njitter = 0\n'
                            f'[defaults]\nschedule = "manual"\n{tables}')
        daemon = DaemonProcess(socket=tmp_path / "run" / "backupd.sock", state_dir=tmp_path / "state",
                               settings=settings, log_path=tmp_path / "backupd.log")
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process is not None:
            daemon.stop()


def configure(daemon: DaemonProcess, repository: Path, sample_data: Path) -> None:
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})


def snapshot(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:
        return client.call("snapshot", {"wait": True})


def notify_status(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:
        return client.call("status")["notify"]


# delivery by a real daemon


def test_a_failed_snapshot_and_its_recovery_reach_the_webhook_and_the_command(
    notifying_daemon: StartDaemon, receiver: Receiver, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    script, env_file = tmp_path / "write-env.py", tmp_path / "notify-env.jsonl"
    script.write_text(ENV_WRITER)
    daemon = notifying_daemon(f'[notify]\nwebhook = "{receiver.url}/hook"\n'
                              f'command = ["{sys.executable}", "{script}", "{env_file}"]\n')
    configure(daemon, repository, sample_data)
    assert snapshot(daemon)["state"] == "succeeded"
    moved = repository.rename(repository.with_name("moved-away"))
    failed = snapshot(daemon)
    assert failed["state"] == "failed"
    moved.rename(repository)
    recovered = snapshot(daemon)
    assert recovered["state"] == "succeeded"

    posts = receiver.wait_for("/hook", 2)
    assert len(posts) == 2 and all(post.method == "POST" for post in posts)
    failure, recovery = (json.loads(post.body) for post in posts)
    assert set(failure) == {"event", "box", "job", "problem", "status"}
    assert failure["event"] == "failure" and failure["box"] == "testbox"
    assert failure["job"]["id"] == failed["id"] and failure["job"]["kind"] == "snapshot"
    assert failure["job"]["state"] == "failed" and failure["job"]["error"]["code"] == "repository_not_found"
    assert failure["problem"]["code"] == "repository_not_found" and "log" not in failure["job"]
    assert failure["status"]["problem"] == failure["problem"] and failure["status"]["state"] == "idle"
    assert recovery["event"] == "recovery" and recovery["job"]["id"] == recovered["id"]
    assert recovery["job"]["state"] == "succeeded" and recovery["problem"] is None

    lines = wait_for(lambda: env_file.exists() and len(text := env_file.read_text().splitlines()) == 2 and text)
    failure_env, recovery_env = (json.loads(line) for line in lines)
    assert failure_env == {
        "BACKUPD_HOOK": "notify", "BACKUPD_EVENT": "failure", "BACKUPD_BOX": "testbox",
        "BACKUPD_JOB_ID": failed["id"], "BACKUPD_JOB_KIND": "snapshot", "BACKUPD_JOB_STATE": "failed",
        "BACKUPD_PROBLEM_CODE": "repository_not_found",
        "BACKUPD_PROBLEM_MESSAGE": failure["problem"]["message"],
    }
    assert recovery_env["BACKUPD_EVENT"] == "recovery" and recovery_env["BACKUPD_JOB_STATE"] == "succeeded"
    assert recovery_env["BACKUPD_PROBLEM_CODE"] == "" and recovery_env["BACKUPD_PROBLEM_MESSAGE"] == ""
    assert PASSPHRASE not in env_file.read_text() + "".join(post.body.decode() for post in receiver.requests)
    health = wait_for(lambda: (status := notify_status(daemon))["last_sent"] and status)
    assert health["ok"] is True and health["last_error"] is None


def test_the_healthcheck_follows_each_snapshot_and_on_success_posts_successes(
    notifying_daemon: StartDaemon, receiver: Receiver, repository: Path, sample_data: Path
) -> None:
    daemon = notifying_daemon(f'[notify]\nhealthcheck = "{receiver.url}/ping/abc/"\n'
                              f'webhook = "{receiver.url}/hook"\non_success = true\n')
    configure(daemon, repository, sample_data)
    succeeded = snapshot(daemon)
    moved = repository.rename(repository.with_name("moved-away"))
    assert snapshot(daemon)["state"] == "failed"
    moved.rename(repository)

    receiver.wait_for("/ping/abc/fail", 1)
    pings = [(post.path, post.body.decode()) for post in receiver.requests if post.path.startswith("/ping/")]
    assert [path for path, _ in pings] == ["/ping/abc/start", "/ping/abc", "/ping/abc/start", "/ping/abc/fail"]
    assert f"snapshot job {succeeded['id']} succeeded" in pings[1][1]
    assert "repository_not_found" in pings[3][1]
    events = [json.loads(post.body)["event"] for post in receiver.wait_for("/hook", 2)]
    assert events == ["success", "failure"]


def test_a_slow_webhook_never_delays_a_job_and_its_failure_shows_in_status(
    notifying_daemon: StartDaemon, receiver: Receiver, repository: Path, sample_data: Path
) -> None:
    receiver.delay = 60.0
    daemon = notifying_daemon(f'[notify]\nwebhook = "{receiver.url}/hook"\non_success = true\n'
                              'timeout = 4\nretries = 0\n')
    configure(daemon, repository, sample_data)
    assert notify_status(daemon) == {"ok": True, "last_error": None, "last_sent": None}
    snapshot(daemon)
    hanging = receiver.wait_for("/hook", 1)[0]
    second = snapshot(daemon)
    assert second["state"] == "succeeded" and hanging.at < second["started"]
    assert second["finished"] - second["started"] < 3.5
    assert receiver.answered == 0
    health = wait_for(lambda: not (status := notify_status(daemon))["ok"] and status, timeout=10)
    assert health["last_error"] == "webhook: no answer within 4 s" and health["last_sent"] is None


def test_a_failing_webhook_is_retried_then_reported_until_it_works_again(
    notifying_daemon: StartDaemon, receiver: Receiver, repository: Path, sample_data: Path
) -> None:
    receiver.status = 500
    daemon = notifying_daemon(f'[notify]\nwebhook = "{receiver.url}/hook"\non_success = true\nretries = 1\n')
    configure(daemon, repository, sample_data)
    snapshot(daemon)
    first, retry = receiver.wait_for("/hook", 2)
    assert retry.at - first.at >= 1.9 and retry.body == first.body
    health = wait_for(lambda: not (status := notify_status(daemon))["ok"] and status)
    assert health["last_error"].startswith("webhook: the server answered HTTP 500")

    receiver.status = 200
    snapshot(daemon)
    receiver.wait_for("/hook", 3)
    health = wait_for(lambda: (status := notify_status(daemon))["ok"] and status)
    assert health["last_sent"] is not None and health["last_error"].startswith("webhook: ")


def test_without_notify_settings_status_has_no_notify(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        assert client.call("status")["notify"] is None


# settings


@pytest.mark.parametrize(
    "notify, fragment",
    [
        ({"webhook": "ftp://example.org/hook"}, "notify.webhook"),
        ({"healthcheck": "hc-ping.com/uuid"}, "notify.healthcheck"),
        ({"command": []}, "notify.command"),
        ({"timeout": 0}, "notify.timeout"),
        ({"retries": -1}, "notify.retries"),
        ({"on_success": "yes"}, "notify.on_success"),
        ({"email": "me@example.org"}, "notify.email"),
    ],
)
def test_bad_notify_settings_are_refused(notify: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment.replace(".", r"\.")):
        parse_settings({"notify": notify})


def test_notify_settings_and_their_defaults() -> None:
    settings = parse_settings({"notify": {"command": "logger backup", "webhook": "https://example.org/x"},
                               "metrics_file": "/var/lib/node_exporter/backupd.prom"})
    assert settings.notify.command == "logger backup" and settings.notify.webhook == "https://example.org/x"
    assert settings.notify.healthcheck is None and settings.notify.on_success is False
    assert (settings.notify.timeout, settings.notify.retries) == (10, 3)
    assert str(settings.metrics_file) == "/var/lib/node_exporter/backupd.prom"


# which events: the watcher on its own


def job_record(job_id: str, kind: str, state: str, code: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": f"{code} happened"} if code else None
    return {"id": job_id, "kind": kind, "trigger": "schedule", "state": state, "error": error}


def overview(problem_code: str | None = None, running: dict[str, Any] | None = None) -> dict[str, Any]:
    problem = {"code": problem_code, "message": "something", "since": 1.0} if problem_code else None
    return {"state": "running" if running else "idle", "problem": problem, "job": running}


def events(outgoing: list[Notice | Ping]) -> list[str]:
    return [str(item.event) if isinstance(item, Notice) else f"ping{item.signal}" for item in outgoing]


def new_watcher(on_success: bool = False) -> EventWatcher:
    watcher = EventWatcher(lambda: "box", lambda: on_success)
    watcher.seed([], overview())
    return watcher


def test_a_repeated_failure_is_told_once_and_its_problem_is_not_told_again() -> None:
    watcher = new_watcher()
    running = job_record("1", "snapshot", "running")
    assert watcher.status_changed(overview("repository_not_found", running=running)) == []
    first = watcher.job_finished(job_record("1", "snapshot", "failed", "repository_not_found"),
                                 overview("repository_not_found"))
    assert events(first) == ["ping/fail", "failure"]
    assert watcher.status_changed(overview("repository_not_found")) == []
    again = watcher.job_finished(job_record("2", "snapshot", "failed", "repository_not_found"),
                                 overview("repository_not_found"))
    assert events(again) == ["ping/fail"]
    other = watcher.job_finished(job_record("3", "snapshot", "failed", "repository_locked"),
                                 overview("repository_locked"))
    assert events(other) == ["ping/fail", "failure"]
    assert events(watcher.job_finished(job_record("4", "snapshot", "succeeded"), overview())) == ["ping", "recovery"]


def test_overdue_and_new_problems_are_told_and_their_end_is_a_recovery() -> None:
    watcher = new_watcher(on_success=True)
    overdue = watcher.status_changed(overview("overdue"))
    assert events(overdue) == ["overdue"] and overdue[0].problem["code"] == "overdue"
    assert watcher.status_changed(overview("overdue")) == []
    assert events(watcher.status_changed(overview("host_key_changed"))) == ["problem"]
    assert events(watcher.job_finished(job_record("5", "snapshot", "succeeded"), overview())) == ["ping", "recovery"]
    assert events(watcher.job_finished(job_record("6", "snapshot", "succeeded"), overview())) == ["ping", "success"]
    assert events(watcher.status_changed(overview("disk_full"))) == ["problem"]
    assert events(watcher.status_changed(overview())) == ["recovery"]


def test_cancelled_and_unwatched_jobs_tell_nothing_but_a_failed_check_or_restore_does() -> None:
    watcher = new_watcher(on_success=True)
    assert watcher.job_finished(job_record("1", "snapshot", "cancelled", "cancelled"), overview()) == []
    assert watcher.job_finished(job_record("2", "prune", "failed", "prune_refused"), overview()) == []
    assert events(watcher.job_finished(job_record("3", "restore", "failed", "borg_failed"), overview())) == ["failure"]
    interrupted = job_record("4", "check", "failed", "interrupted")
    assert events(watcher.job_finished(interrupted, overview())) == ["failure"]
    assert events(watcher.job_finished(job_record("5", "restore", "succeeded"), overview())) == ["recovery"]


def test_a_restart_repeats_nothing_and_still_recovers() -> None:
    failed = Job.from_record({**job_record("7", "snapshot", "failed", "repository_not_found"), "started": 1.0,
                              "finished": 2.0})
    watcher = EventWatcher(lambda: "box", lambda: False)
    watcher.seed([failed], overview("repository_not_found"))
    assert watcher.status_changed(overview("repository_not_found")) == []
    assert events(watcher.job_finished(job_record("8", "snapshot", "succeeded"), overview())) == ["ping", "recovery"]


def test_the_start_of_a_snapshot_is_a_healthcheck_ping_only() -> None:
    watcher = new_watcher()
    started = watcher.job_started(job_record("9", "snapshot", "running"))
    assert len(started) == 1 and isinstance(started[0], Ping) and started[0].signal == Signal.START
    assert watcher.job_started(job_record("10", "check", "running")) == []
