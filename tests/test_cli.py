"""backupctl against a real backupd: in-process through main() and as a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import IO, Any

import msgpack
import pytest

from backupctl.cli import build_parser, main
from backupctl.commands.mirror import mirror_options
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.users import NOBODY, folder_others_can_reach, run_as_user

WRONG_PASSPHRASE = "not the right one at all"
SECRETS = (PASSPHRASE, WRONG_PASSPHRASE)
OVERVIEW_KEYS = {
    "state", "repository", "schedule", "automatic", "next_run", "last_snapshot",
    "snapshot_count", "total_size", "file_count", "problem", "last_check", "job",
}
SUBPROCESS_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def assert_no_secret(*texts: str) -> None:
    for secret in SECRETS:
        for text in texts:
            assert secret not in text


RunCli = Callable[..., Outcome]


@pytest.fixture
def backupctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """Run backupctl in this process: backupctl(socket, *args) -> Outcome."""
    monkeypatch.delenv("BACKUPD_SOCKET", raising=False)
    monkeypatch.delenv("BACKUPCTL_PASSPHRASE", raising=False)

    def run(socket: Path, *args: str) -> Outcome:
        code = main(["--socket", str(socket), *args])
        captured = capsys.readouterr()
        assert_no_secret(captured.out, captured.err)
        return Outcome(code, captured.out, captured.err)

    return run


def run_subprocess(
    *args: str, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL
) -> Outcome:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("BACKUPD_SOCKET", "BACKUPCTL_PASSPHRASE")}
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "backupctl.cli", *args],
        capture_output=True, text=True, env=environment, stdin=stdin, timeout=SUBPROCESS_TIMEOUT,
    )
    assert_no_secret(completed.stdout, completed.stderr)
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def read_until(stream: IO[bytes], marker: bytes, timeout: float = 15.0) -> bytes:
    """Read from a pipe until marker appears; fail after timeout seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{marker!r} did not appear in {data!r}"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            assert chunk, f"the stream ended before {marker!r}: {data!r}"
            data += chunk
    return data


def passphrase_file(folder: Path, passphrase: str = PASSPHRASE) -> Path:
    path = folder / "passphrase"
    path.write_text(passphrase + "\n")
    path.chmod(0o600)
    return path


def take_snapshot(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:
        job = client.call("snapshot", {"wait": True})
    assert job["state"] == "succeeded", job
    return job


def wait_until_idle(daemon: DaemonProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while client.call("status")["job"] is not None:
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.05)


# configure


def test_configure_with_passphrase_file_creates_then_connects(
    daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    secret = passphrase_file(tmp_path)
    common = ["--socket", str(daemon.socket), "configure", str(repository),
              "--source", str(sample_data), "--passphrase-file", str(secret)]

    created = run_subprocess(*common)
    assert created.code == 0, created.err
    assert f"Created a new repository at {repository}" in created.out
    assert "0 snapshots" in created.out
    assert "Backups are configured: 1 folder, snapshots only when asked for" in created.out

    connected = run_subprocess("--json", *common)
    assert connected.code == 0, connected.err
    assert json.loads(connected.out) == {"created": False, "snapshot_count": 0}


def test_configure_with_passphrase_from_environment(
    daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    env = {"BACKUPCTL_PASSPHRASE": PASSPHRASE}
    common = ["--socket", str(daemon.socket), "configure", str(repository), "--source", str(sample_data)]

    created = run_subprocess("--json", *common, env=env)
    assert created.code == 0, created.err
    assert json.loads(created.out) == {"created": True, "snapshot_count": 0}

    connected = run_subprocess(*common, env=env)
    assert connected.code == 0, connected.err
    assert f"Connected to the existing repository at {repository} (0 snapshots)" in connected.out
    with daemon.client() as client:
        assert client.call("config")["repository"] == str(repository)


def test_configure_connects_to_a_repository_with_snapshots(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path, backupctl
) -> None:
    take_snapshot(configured_daemon)
    secret = passphrase_file(tmp_path)
    outcome = backupctl(configured_daemon.socket, "configure", str(repository),
                        "--source", str(sample_data), "--passphrase-file", str(secret))
    assert outcome.code == 0, outcome.err
    assert "Connected to the existing repository" in outcome.out
    assert "(1 snapshot)" in outcome.out
    with configured_daemon.client() as client:
        client.call("reset")
    restore_only = backupctl(configured_daemon.socket, "configure", str(repository), "--schedule", "daily",
                             "--passphrase-file", str(secret))
    assert restore_only.code == 0, restore_only.err
    assert "(1 snapshot)" in restore_only.out and "Nothing will be backed up" in restore_only.out
    again = backupctl(configured_daemon.socket, "configure", str(repository), "--schedule", "daily",
                      "--source", str(sample_data), "--passphrase-file", str(secret))
    assert "Backups are configured: 1 folder, automatic snapshots daily." in again.out


def test_configure_with_wrong_passphrase_fails_without_showing_it(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    secret = passphrase_file(tmp_path, WRONG_PASSPHRASE)
    outcome = run_subprocess("--socket", str(configured_daemon.socket), "configure", str(repository),
                             "--source", str(sample_data), "--passphrase-file", str(secret))
    assert outcome.code == 1
    assert "error: passphrase_wrong:" in outcome.err


def test_configure_without_a_passphrase_is_a_usage_error(
    daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    outcome = run_subprocess("--socket", str(daemon.socket), "configure", str(repository),
                             "--source", str(sample_data))
    assert outcome.code == 2
    assert "passphrase" in outcome.err
    with daemon.client() as client:
        assert client.call("status")["state"] == "unconfigured"


def test_configure_reads_the_passphrase_from_stdin(
    daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(daemon.socket), "configure", str(repository),
         "--source", str(sample_data), "--passphrase-file", "-"],
        input=PASSPHRASE + "\n", capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr
    assert_no_secret(completed.stdout, completed.stderr)
    assert "Created a new repository" in completed.stdout


def test_configure_rejects_a_missing_passphrase_file(
    daemon: DaemonProcess, repository: Path, tmp_path: Path, backupctl: RunCli
) -> None:
    outcome = backupctl(daemon.socket, "configure", str(repository), "--passphrase-file", str(tmp_path / "missing"))
    assert outcome.code == 2
    assert "cannot read the passphrase file" in outcome.err


def test_configure_reports_the_invalid_option(
    daemon: DaemonProcess, repository: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch, backupctl: RunCli
) -> None:
    monkeypatch.setenv("BACKUPCTL_PASSPHRASE", PASSPHRASE)
    outcome = backupctl(daemon.socket, "configure", str(repository), "--source", str(sample_data),
                        "--schedule", "fortnightly")
    assert outcome.code == 2
    assert "error: invalid_params:" in outcome.err
    assert "option: schedule" in outcome.err


def type_passphrases(socket: Path, passphrases: list[str], *args: str) -> tuple[Outcome, list[bytes]]:
    """Run backupctl with a terminal as stdin, typing a passphrase at each prompt; the prompts seen."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(socket), *args],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    os.close(terminal)
    prompts = []
    try:
        for passphrase in passphrases:
            prompts.append(read_until(process.stderr, b"passphrase: "))
            os.write(controller, passphrase.encode() + b"\n")
        out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    return Outcome(process.returncode, out.decode(), err.decode()), prompts


def test_the_passphrase_is_asked_once_to_connect_and_twice_to_create(
    configured_daemon: DaemonProcess, repository: Path, tmp_path: Path
) -> None:
    connected, prompts = type_passphrases(configured_daemon.socket, [PASSPHRASE], "configure", str(repository))
    assert connected.code == 0, connected.err
    assert "Connected to the existing repository" in connected.out
    assert prompts == [b"Repository passphrase: "]
    assert "passphrase" not in connected.err

    new = tmp_path / "new-repo"
    created, prompts = type_passphrases(configured_daemon.socket, [PASSPHRASE, PASSPHRASE], "configure", str(new))
    assert created.code == 0, created.err
    assert f"Created a new repository at {new}" in created.out
    assert len(prompts) == 2 and prompts[1].endswith(b"Repeat the passphrase: ")
    assert b"a new one will be created" in prompts[1]


def test_configure_again_keeps_the_sources_and_settings_it_is_not_given(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path, backupctl: RunCli
) -> None:
    secret = passphrase_file(tmp_path)
    assert backupctl(configured_daemon.socket, "change", "--schedule", "daily 04:00").code == 0
    again = backupctl(configured_daemon.socket, "configure", str(repository), "--passphrase-file", str(secret))
    assert again.code == 0, again.err
    assert "Nothing will be backed up" not in again.out
    assert "Backups are configured: 1 folder, automatic snapshots daily 04:00." in again.out
    with configured_daemon.client() as client:
        assert client.call("config")["sources"] == [str(sample_data)]


# change


def test_change_sets_settings_without_the_passphrase_and_keeps_the_rest(
    configured_daemon: DaemonProcess, sample_data: Path, backupctl: RunCli
) -> None:
    with configured_daemon.client() as client:
        before = client.call("config")
    outcome = backupctl(configured_daemon.socket, "change", "--schedule", "daily 02:30", "--keep", "daily=9",
                        "--exclude", "*.tmp", "--compression", "zstd,3", "--upload-limit", "500")
    assert outcome.code == 0, outcome.err
    assert "Changed compression, exclude, keep, schedule, upload_limit." in outcome.out
    assert "Schedule:    daily 02:30" in outcome.out
    with configured_daemon.client() as client:
        after = client.call("config")
        overview = client.call("status")
    assert after == {**before, "schedule": "daily 02:30", "keep": {**before["keep"], "daily": 9},
                     "exclude": ["*.tmp"], "compression": "zstd,3", "upload_limit": 500}
    assert overview["automatic"] is True and overview["next_run"] is not None
    take_snapshot(configured_daemon)

    as_json = backupctl(configured_daemon.socket, "--json", "change", "--no-exclude")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out)["exclude"] == []


def test_change_refuses_bad_values_as_usage_errors_and_changes_nothing(
    configured_daemon: DaemonProcess, backupctl: RunCli
) -> None:
    with configured_daemon.client() as client:
        before = client.call("config")
    for args, param in ((["--keep", "fortnightly=3"], "keep"), (["--schedule", "0 0 30 2 *"], "schedule"),
                        (["--source", "/no/such/folder"], "sources"), (["--upload-limit", "-1"], "upload_limit")):
        outcome = backupctl(configured_daemon.socket, "change", *args)
        assert outcome.code == 2, (args, outcome)
        assert f"(option: {param})" in outcome.err
    with configured_daemon.client() as client:
        assert client.call("config") == before
    assert backupctl(configured_daemon.socket, "change").code == 2


def test_change_before_configure_names_the_command_to_run(daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(daemon.socket, "change", "--schedule", "daily")
    assert outcome.code == 1
    assert "error: not_configured:" in outcome.err
    assert "Run `backupctl configure REPOSITORY` first" in outcome.err


# status, config, ping


def test_status_names_the_repository_and_the_snapshot_count(
    configured_daemon: DaemonProcess, repository: Path, backupctl
) -> None:
    take_snapshot(configured_daemon)
    outcome = backupctl(configured_daemon.socket, "status")
    assert outcome.code == 0, outcome.err
    assert f"Repository:    {repository}" in outcome.out
    assert "Snapshots:     1" in outcome.out
    assert "State:         idle" in outcome.out
    assert "just now" in outcome.out
    assert "Problem:       none" in outcome.out


def test_status_shows_the_schedule_and_the_next_snapshot(
    daemon: DaemonProcess, repository: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch, backupctl
) -> None:
    monkeypatch.setenv("BACKUPCTL_PASSPHRASE", PASSPHRASE)
    configured = backupctl(daemon.socket, "configure", str(repository), "--source", str(sample_data),
                           "--schedule", "daily 04:30")
    assert configured.code == 0, configured.err
    outcome = backupctl(daemon.socket, "status")
    assert "Automatic:     on (daily 04:30), next snapshot in " in outcome.out
    assert "Last snapshot: none yet" in outcome.out
    assert "Last check:    never" in outcome.out


def test_json_status_is_the_overview(
    configured_daemon: DaemonProcess, repository: Path, backupctl: RunCli
) -> None:
    outcome = backupctl(configured_daemon.socket, "--json", "status")
    assert outcome.code == 0, outcome.err
    overview = json.loads(outcome.out)
    assert OVERVIEW_KEYS <= set(overview)
    assert overview["repository"] == str(repository)
    assert overview["state"] == "idle"


def test_json_may_follow_the_command(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(configured_daemon.socket, "status", "--json")
    assert OVERVIEW_KEYS <= set(json.loads(outcome.out))


def test_status_when_unconfigured(daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(daemon.socket, "status")
    assert outcome.code == 0
    assert "unconfigured" in outcome.out
    assert "backupctl configure" in outcome.out


def test_config_shows_the_configuration_but_not_the_passphrase(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, backupctl
) -> None:
    human = backupctl(configured_daemon.socket, "config")
    assert human.code == 0
    assert str(repository) in human.out
    assert str(sample_data) in human.out
    assert "Passphrase:  set" in human.out
    machine = json.loads(backupctl(configured_daemon.socket, "--json", "config").out)
    assert machine["repository"] == str(repository)
    assert "passphrase" not in machine


def test_ping(daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(daemon.socket, "ping")
    assert outcome.code == 0
    assert "API 1" in outcome.out
    assert json.loads(backupctl(daemon.socket, "--json", "ping").out)["api"] == 1


def test_socket_from_the_environment(daemon: DaemonProcess) -> None:
    outcome = run_subprocess("ping", env={"BACKUPD_SOCKET": str(daemon.socket)})
    assert outcome.code == 0, outcome.err
    assert str(daemon.socket) in outcome.out


# snapshot, snapshots, jobs, cancel


def test_snapshot_waits_with_progress_then_snapshots_lists_it(
    configured_daemon: DaemonProcess, backupctl: RunCli
) -> None:
    outcome = run_subprocess("--socket", str(configured_daemon.socket), "snapshot")
    assert outcome.code == 0, outcome.err
    assert "Snapshot job" in outcome.err
    assert " files  " in outcome.err and " read  " in outcome.err
    assert "taken in" in outcome.out
    assert "100 files" in outcome.out

    with configured_daemon.client() as client:
        assert client.call("status")["state"] == "idle"
        name = client.call("snapshots")[0]["name"]
    listing = backupctl(configured_daemon.socket, "snapshots")
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert lines[0].split() == ["NAME", "TIME", "AGE"]
    assert len(lines) == 2
    assert lines[1].startswith(name)


def test_json_snapshot_prints_the_finished_job(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(configured_daemon.socket, "--json", "snapshot")
    assert outcome.code == 0, outcome.err
    job = json.loads(outcome.out)
    assert job["kind"] == "snapshot"
    assert job["state"] == "succeeded"
    assert job["result"]["snapshot"]["files"] == 100


def test_check_verifies_the_repository(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    take_snapshot(configured_daemon)
    outcome = backupctl(configured_daemon.socket, "check")
    assert outcome.code == 0, outcome.err
    assert "no problems found" in outcome.out
    status = backupctl(configured_daemon.socket, "status")
    assert "Last check:    just now: no problems found" in status.out


def test_snapshot_no_wait_then_jobs(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    started = backupctl(configured_daemon.socket, "snapshot", "--no-wait")
    assert started.code == 0, started.err
    job_id = started.out.strip()
    assert job_id.isdigit()

    listing = backupctl(configured_daemon.socket, "jobs")
    assert listing.code == 0
    rows = [line.split() for line in listing.out.splitlines()]
    assert rows[0] == ["ID", "KIND", "TRIGGER", "STATE", "STARTED", "DURATION", "ERROR"]
    assert rows[1][:3] == [job_id, "snapshot", "manual"]
    assert rows[1][3] in ("running", "succeeded")

    wait_until_idle(configured_daemon)
    latest = json.loads(backupctl(configured_daemon.socket, "--json", "jobs", "--limit", "1").out)
    assert [job["id"] for job in latest] == [job_id]
    assert latest[0]["state"] == "succeeded"


def test_snapshot_before_configure_is_a_daemon_error(daemon: DaemonProcess) -> None:
    outcome = run_subprocess("--socket", str(daemon.socket), "snapshot")
    assert outcome.code == 1
    assert outcome.err.startswith("error: not_configured: ")
    assert "Traceback" not in outcome.err


def test_cancel_of_an_unknown_job_is_not_found(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(configured_daemon.socket, "cancel", "9999")
    assert outcome.code == 1
    assert "error: not_found:" in outcome.err


def test_cancel_of_a_running_job_then_of_the_finished_job(
    configured_daemon: DaemonProcess, backupctl: RunCli
) -> None:
    with configured_daemon.client() as client:
        job = client.call("snapshot")
    cancelling = backupctl(configured_daemon.socket, "cancel", job["id"])
    assert cancelling.code == 0, cancelling.err
    assert f"Cancelling job {job['id']}." in cancelling.out

    wait_until_idle(configured_daemon)
    again = backupctl(configured_daemon.socket, "cancel", job["id"])
    assert again.code == 0
    assert f"Job {job['id']} already finished (cancelled)" in again.out


def test_cancel_of_a_job_that_ended_long_ago_says_it_ended(
    configured_daemon: DaemonProcess, backupctl: RunCli
) -> None:
    first = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        for _ in range(21):
            client.call("restore", {"dry_run": True, "wait": True})
    outcome = backupctl(configured_daemon.socket, "cancel", first["id"])
    assert outcome.code == 0, outcome.err
    assert outcome.out == f"Job {first['id']} already finished (succeeded); nothing to cancel.\n"


def test_snapshot_that_gets_cancelled_exits_1(configured_daemon: DaemonProcess) -> None:
    snapshot = subprocess.Popen(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(configured_daemon.socket), "snapshot"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        announced = read_until(snapshot.stderr, b" started.").decode()
        job_id = announced.split("Snapshot job ", 1)[1].split()[0]
        with configured_daemon.client() as client:
            client.call("cancel", {"job": job_id})
        out, err = snapshot.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if snapshot.poll() is None:
            snapshot.kill()
            snapshot.wait()
    assert snapshot.returncode == 1
    assert "error: cancelled: " in err.decode()
    assert out == b""


def test_jobs_history_never_shows_the_passphrase(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    take_snapshot(configured_daemon)
    for args in (["jobs"], ["--json", "jobs"], ["--json", "status"], ["--json", "snapshots"], ["config"]):
        assert backupctl(configured_daemon.socket, *args).code == 0


# exit codes


def test_unreachable_daemon_exits_3_naming_the_socket(tmp_path: Path, backupctl: RunCli) -> None:
    missing = tmp_path / "nobody-listens.sock"
    outcome = backupctl(missing, "status")
    assert outcome.code == 3
    assert str(missing) in outcome.err
    in_subprocess = run_subprocess("--socket", str(missing), "ping")
    assert in_subprocess.code == 3
    assert str(missing) in in_subprocess.err
    assert "Traceback" not in in_subprocess.err


def answer_once(path: Path, result: Any) -> threading.Thread:
    """A peer on a real Unix socket that answers one msgpack-rpc request with result, as a
    daemon of another version might, then hangs up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener, listener.accept()[0] as connection:
            unpacker = msgpack.Unpacker(raw=False)
            while (request := next(unpacker, None)) is None:
                unpacker.feed(connection.recv(65536))
            connection.sendall(msgpack.packb([1, request[1], None, result]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_an_answer_of_the_wrong_shape_exits_3_naming_the_field(tmp_path: Path) -> None:
    socket_path = tmp_path / "other.sock"
    peer = answer_once(socket_path, {"state": "idle", "snapshot_count": "many"})
    outcome = run_subprocess("--socket", str(socket_path), "status")
    peer.join(timeout=10)
    assert outcome.code == 3
    assert "Overview.snapshot_count: expected int, got str" in outcome.err
    assert "Traceback" not in outcome.err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert run_subprocess("jobs", "--limit", "0").code == 2


def test_an_option_backupd_refuses_exits_2(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    outcome = backupctl(configured_daemon.socket, "change", "--keep", "fortnightly=3")
    assert outcome.code == 2, outcome
    assert "error: invalid_params:" in outcome.err and "fortnightly" in outcome.err


def test_with_json_an_error_is_an_object_on_stdout(
    configured_daemon: DaemonProcess, tmp_path: Path, backupctl: RunCli
) -> None:
    refused = backupctl(configured_daemon.socket, "--json", "change", "--keep", "fortnightly=3")
    assert refused.code == 2
    error = json.loads(refused.out)["error"]
    assert error["code"] == "invalid_params" and error["data"]["param"] == "keep" and "fortnightly" in error["message"]
    missing = backupctl(configured_daemon.socket, "--json", "cancel", "9999")
    assert missing.code == 1
    assert json.loads(missing.out)["error"]["code"] == "not_found"
    unreachable = backupctl(tmp_path / "nobody.sock", "--json", "status")
    assert unreachable.code == 3
    assert json.loads(unreachable.out)["error"]["code"] == "unreachable"


def test_no_wait_prints_the_job_id_alone(configured_daemon: DaemonProcess, sample_data: Path) -> None:
    take_snapshot(configured_daemon)
    socket = ["--socket", str(configured_daemon.socket)]
    for command in (["restore", "--yes", "--no-wait"], ["snapshot", "--no-wait"], ["check", "--no-wait"]):
        outcome = run_subprocess(*socket, *command)
        assert outcome.code == 0, outcome.err
        assert outcome.out.strip().isdigit() and outcome.out.count("\n") == 1, (command, outcome.out)
        wait_until_idle(configured_daemon)
        as_json = run_subprocess(*socket, "--json", *command)
        assert json.loads(as_json.out)["id"].isdigit(), as_json.out
        wait_until_idle(configured_daemon)


# watch


def test_watch_prints_notifications_until_ctrl_c(configured_daemon: DaemonProcess) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(configured_daemon.socket), "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        read_until(watcher.stderr, b"Ctrl-C")
        job = take_snapshot(configured_daemon)
        seen = read_until(watcher.stdout, b"job.finished").decode()
        watcher.send_signal(signal.SIGINT)
        rest, errors = watcher.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    output = seen + rest.decode()
    assert f"job.started     snapshot job {job['id']} started (manual)" in output
    assert f"snapshot job {job['id']} succeeded in" in output
    assert "status.changed" in output
    assert watcher.returncode == 130
    assert b"Traceback" not in errors
    assert_no_secret(output, errors.decode())


# failures borg reports


def test_snapshot_of_a_vanished_repository_reports_borgs_error(
    configured_daemon: DaemonProcess, repository: Path, backupctl
) -> None:
    repository.rename(repository.with_name("moved-away"))
    outcome = backupctl(configured_daemon.socket, "snapshot")
    assert outcome.code == 1
    assert "error: repository_not_found: " in outcome.err
    status = backupctl(configured_daemon.socket, "status")
    assert "Problem:       repository_not_found: " in status.out


# restore, reset, export-key


CHANGED_CONTENT = b"changed after the snapshot"


@dataclass(frozen=True)
class ChangedData:
    changed: Path
    saved: bytes
    added: Path


def change_after_a_snapshot(daemon: DaemonProcess, sample_data: Path) -> ChangedData:
    """Take a snapshot, then overwrite one file and add another."""
    take_snapshot(daemon)
    changed = sample_data / "folder0" / "file1.txt"
    saved = changed.read_bytes()
    changed.write_bytes(CHANGED_CONTENT)
    added = sample_data / "folder0" / "added-after-the-snapshot.txt"
    added.write_bytes(b"new")
    return ChangedData(changed, saved, added)


def assert_unchanged_since_the_change(data: ChangedData) -> None:
    assert data.changed.read_bytes() == CHANGED_CONTENT
    assert data.added.exists()


def answer_on_a_terminal(socket: Path, answer: str, *args: str) -> Outcome:
    """Run backupctl with a terminal as stdin and type answer at its prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(socket), *args],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    os.close(terminal)
    try:
        prompt = read_until(process.stderr, b"Type yes to continue: ")
        os.write(controller, answer.encode() + b"\n")
        out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    outcome = Outcome(process.returncode, out.decode(), (prompt + err).decode())
    assert_no_secret(outcome.out, outcome.err)
    return outcome


def test_restore_dry_run_shows_what_would_change_and_changes_nothing(
    configured_daemon: DaemonProcess, sample_data: Path, monkeypatch: pytest.MonkeyPatch, backupctl: RunCli
) -> None:
    data = change_after_a_snapshot(configured_daemon, sample_data)
    monkeypatch.chdir(sample_data.parent)
    outcome = backupctl(configured_daemon.socket, "restore", "--dry-run", "--path", "data/folder0")
    assert outcome.code == 0, outcome.err
    assert f"Targets:   {sample_data / 'folder0'}\n" in outcome.out
    assert "Written:   0 files missing now" in outcome.out
    assert "Replaced:  1 file changed since the snapshot" in outcome.out
    assert "Removed:   1 file not in the snapshot" in outcome.out
    assert f"Files to replace:\n  {data.changed}\n" in outcome.out
    assert f"Files to remove:\n  {data.added}" in outcome.out
    assert_unchanged_since_the_change(data)


def test_jobs_mark_a_dry_run_apart_from_a_restore(
    configured_daemon: DaemonProcess, sample_data: Path, backupctl: RunCli
) -> None:
    change_after_a_snapshot(configured_daemon, sample_data)
    assert backupctl(configured_daemon.socket, "restore", "--dry-run").code == 0
    assert backupctl(configured_daemon.socket, "restore", "--yes").code == 0
    records = json.loads(backupctl(configured_daemon.socket, "--json", "jobs", "--limit", "2").out)
    assert [(record["kind"], record["dry_run"]) for record in records] == [
        ("restore", False), ("restore", True)]
    listed = backupctl(configured_daemon.socket, "jobs").out.splitlines()
    assert "restore (dry run)" in listed[2] and "dry run" not in listed[1]
    dry_run_id = records[1]["id"]
    assert f"restore (dry run) job {dry_run_id}" in backupctl(configured_daemon.socket, "log", dry_run_id).out


def test_human_times_name_their_zone(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    take_snapshot(configured_daemon)
    zone = time.strftime("%Z")
    for command in ("snapshots", "jobs", "status"):
        outcome = backupctl(configured_daemon.socket, command)
        assert re.search(rf"\d\d:\d\d:\d\d {zone}\b", outcome.out), (command, outcome.out)


def test_restore_with_yes_brings_back_the_changed_files(
    configured_daemon: DaemonProcess, sample_data: Path, backupctl: RunCli
) -> None:
    data = change_after_a_snapshot(configured_daemon, sample_data)
    outcome = backupctl(configured_daemon.socket, "restore", "--yes")
    assert outcome.code == 0, outcome.err
    assert "Replaced:  1 file" in outcome.out
    assert f"written to {sample_data}." in outcome.out
    assert "Restore job " in outcome.err
    assert data.changed.read_bytes() == data.saved
    assert not data.added.exists()


def test_restore_without_yes_and_without_a_terminal_exits_2_and_changes_nothing(
    configured_daemon: DaemonProcess, sample_data: Path
) -> None:
    data = change_after_a_snapshot(configured_daemon, sample_data)
    outcome = run_subprocess("--socket", str(configured_daemon.socket), "restore")
    assert outcome.code == 2
    assert "pass --yes" in outcome.err
    assert "Replaced:  1 file" in outcome.out
    assert_unchanged_since_the_change(data)
    with configured_daemon.client() as client:
        assert client.call("jobs", {"limit": 1})[0]["result"]["dry_run"] is True


def test_restore_on_a_terminal_goes_ahead_only_after_yes(
    configured_daemon: DaemonProcess, sample_data: Path
) -> None:
    data = change_after_a_snapshot(configured_daemon, sample_data)
    declined = answer_on_a_terminal(configured_daemon.socket, "no", "restore")
    assert declined.code == 1
    assert f"This overwrites {sample_data} with snapshot " in declined.err
    assert "Nothing was restored." in declined.err
    assert_unchanged_since_the_change(data)
    accepted = answer_on_a_terminal(configured_daemon.socket, "yes", "restore")
    assert accepted.code == 0, accepted.err
    assert data.changed.read_bytes() == data.saved


def test_restore_of_an_unknown_snapshot_is_not_found(configured_daemon: DaemonProcess, backupctl: RunCli) -> None:
    take_snapshot(configured_daemon)
    outcome = backupctl(configured_daemon.socket, "restore", "--snapshot", "no-such-snapshot", "--yes")
    assert outcome.code == 1
    assert "error: not_found:" in outcome.err


def test_reset_with_yes_unconfigures_and_keeps_the_repository(
    configured_daemon: DaemonProcess, repository: Path, backupctl: RunCli
) -> None:
    refused = run_subprocess("--socket", str(configured_daemon.socket), "reset")
    assert refused.code == 2
    assert "pass --yes" in refused.err
    assert json.loads(backupctl(configured_daemon.socket, "--json", "status").out)["state"] == "idle"

    outcome = backupctl(configured_daemon.socket, "reset", "--yes")
    assert outcome.code == 0, outcome.err
    assert "automatic backups stop" in outcome.out
    assert "snapshots are NOT deleted" in outcome.out
    for secret in ("passphrase", "SSH key", "access keys"):
        assert secret in outcome.out, outcome.out
    assert f"The repository at {repository} is still there." in outcome.out
    assert json.loads(backupctl(configured_daemon.socket, "--json", "status").out)["state"] == "unconfigured"
    assert (repository / "config").is_file()


def test_export_key_writes_a_private_note_and_never_overwrites_it(
    configured_daemon: DaemonProcess, repository: Path, tmp_path: Path, backupctl: RunCli
) -> None:
    note = tmp_path / "recovery-note.txt"
    outcome = backupctl(configured_daemon.socket, "export-key", "--output", str(note))
    assert outcome.code == 0, outcome.err
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    text = note.read_text()
    assert "BORG_KEY " in text and str(repository) in text
    assert_no_secret(text)

    again = backupctl(configured_daemon.socket, "export-key", "--output", str(note))
    assert again.code == 1
    assert "already exists" in again.err
    assert note.read_text() == text

    printed = backupctl(configured_daemon.socket, "--json", "export-key")
    assert printed.code == 0, printed.err
    assert json.loads(printed.out)["key"].startswith("BORG_KEY ")


def test_export_key_refuses_a_folder_another_user_can_change(
    configured_daemon: DaemonProcess, tmp_path: Path, backupctl: RunCli
) -> None:
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    with folder_others_can_reach() as shared:
        sticky, theirs = shared / "sticky", shared / "theirs"
        sticky.mkdir()
        sticky.chmod(0o1777)
        theirs.mkdir()
        os.chown(theirs, NOBODY, NOBODY)
        plant_link = "import os, sys; os.symlink(sys.argv[1], sys.argv[2])"
        run_as_user(NOBODY, plant_link, str(victim), str(sticky / "note.txt"))

        open_to_all = backupctl(configured_daemon.socket, "export-key", "--output", str(sticky / "note.txt"))
        assert open_to_all.code == 1
        assert f"other users can write the folder {sticky} (mode 1777); choose one only you" in open_to_all.err
        not_mine = backupctl(configured_daemon.socket, "export-key", "--output", str(theirs / "note.txt"))
        assert not_mine.code == 1
        assert f"the folder {theirs} belongs to another user; choose one of your own" in not_mine.err
        assert os.listdir(theirs) == [] and [entry.name for entry in sticky.iterdir()] == ["note.txt"]
    assert victim.read_text() == "precious\n"


def test_ssh_key_shows_the_key_and_the_authorized_keys_line(daemon):
    completed = subprocess.run([sys.executable, "-m", "backupctl.cli", "--socket", str(daemon.socket), "ssh-key"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "ssh-ed25519 " in completed.stdout and 'command="borg serve --restrict-to-repository' in completed.stdout


# log, the warnings marker, watch on a terminal


def test_log_shows_a_job_with_what_borg_could_not_read_and_jobs_marks_it(
    daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path, backupctl: RunCli
) -> None:
    vanishing = tmp_path / "vanishing"
    vanishing.mkdir()
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data), str(vanishing)]})
    vanishing.rmdir()
    taken = backupctl(daemon.socket, "snapshot")
    assert taken.code == 0, taken.err
    assert f"warning: {vanishing}: stat: [Errno 2] No such file or directory" in taken.err
    with daemon.client() as client:
        job = client.call("jobs", {"limit": 1})[0]

    listing = backupctl(daemon.socket, "jobs")
    assert listing.code == 0, listing.err
    row = next(line.split() for line in listing.out.splitlines() if line.startswith(job["id"] + " "))
    assert row[3] == "succeeded!"
    assert listing.out.rstrip().endswith("! with warnings: `backupctl log JOB_ID` shows them")

    shown = backupctl(daemon.socket, "log", job["id"])
    assert shown.code == 0, shown.err
    assert f"Job:      snapshot job {job['id']} (manual)\n" in shown.out
    assert "State:    succeeded\n" in shown.out
    assert "Warnings: borg reported 1 warning (1 listed in the result); what it could not read is not in" in shown.out
    assert "Log (7 lines, 2 warnings):\n" in shown.out
    assert f"  warning  {vanishing}: stat: [Errno 2] No such file or directory" in shown.out
    assert f"  info     job {job['id']} succeeded: snapshot" in shown.out

    record = json.loads(backupctl(daemon.socket, "--json", "log", job["id"]).out)
    assert record["id"] == job["id"] and record["log"][-1]["level"] == "info"
    missing = backupctl(daemon.socket, "log", "9999")
    assert missing.code == 1 and "error: not_found:" in missing.err


def test_watch_on_a_terminal_redraws_the_overview_until_ctrl_c(configured_daemon: DaemonProcess) -> None:
    controller, terminal = pty.openpty()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "backupctl.cli", "--socket", str(configured_daemon.socket), "watch"],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE,
    )
    os.close(terminal)
    screen = open(controller, "rb", buffering=0, closefd=True)
    try:
        first = read_until(screen, b"Problem:").decode()
        take_snapshot(configured_daemon)
        redrawn = read_until(screen, b"Snapshots:     1,").decode()
        watcher.send_signal(signal.SIGINT)
        _, errors = watcher.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        screen.close()
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert "State:         idle" in first and "Snapshots:     0," in first
    assert "Last snapshot: none yet" in first and "Problem:       none" in first
    assert "\x1b[J" in redrawn and "A\r" in redrawn
    assert "Last snapshot: just now" in redrawn
    assert watcher.returncode == 130
    assert b"Traceback" not in errors
    assert_no_secret(first, redrawn, errors.decode())


def test_restore_shows_what_the_snapshot_excluded_as_kept_and_removes_it_only_when_asked(
    configured_daemon: DaemonProcess, sample_data: Path, backupctl: RunCli
) -> None:
    film = sample_data / "folder1" / "holiday.big"
    film.write_bytes(b"film")
    assert backupctl(configured_daemon.socket, "change", "--exclude", "*.big").code == 0
    take_snapshot(configured_daemon)
    plan = backupctl(configured_daemon.socket, "restore", "--dry-run")
    assert plan.code == 0, plan.err
    assert "Kept:      1 item the snapshot excluded" in plan.out
    assert f"Files kept:\n  {film}" in plan.out
    assert re.search(r"Room:      \S+ \S+ free on /", plan.out), plan.out
    assert backupctl(configured_daemon.socket, "restore", "--yes").code == 0
    assert film.read_bytes() == b"film"
    removing = backupctl(configured_daemon.socket, "restore", "--yes", "--remove-excluded")
    assert removing.code == 0, removing.err
    assert "Removed:   1 file not in the snapshot" in removing.out and not film.exists()


def test_mirror_options_on_the_command_line_become_the_calls_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUPCTL_MIRROR_SECRET", "s3cret")
    args = build_parser().parse_args(["mirror", "set", "s3", "edgebox", "--key-id", "AKIA", "--prefix", "kitchen",
                                      "--take-over", "--replace-object-count", "40"])
    assert mirror_options(args) == {"provider": "s3", "bucket": "edgebox", "access_key_id": "AKIA",
                                    "secret_access_key": "s3cret", "prefix": "kitchen", "take_over": True,
                                    "replace_object_count": 40}
    restore = build_parser().parse_args(["mirror", "restore", "s3", "edgebox", "--key-id", "AKIA", "--create"])
    assert restore.create and "take_over" not in mirror_options(restore)
