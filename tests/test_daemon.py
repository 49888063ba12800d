"""backupd's life end to end: a real daemon process starts, answers, stops and keeps its
state folder; a second one refuses to start."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time

from tests.calls import call_error, start_large_snapshot, wait_for
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.users import NOBODY


def test_state_files_are_private_and_hold_the_passphrase_only_in_config(configured_daemon):
    state_dir = configured_daemon.state_dir
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for path in (*state_dir.glob("*.json"), *state_dir.glob("*.journal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (PASSPHRASE in path.read_text()) == (path.name == "config.json")
    assert PASSPHRASE not in configured_daemon.log()


def test_operations_that_need_a_repository_say_so(daemon):
    with daemon.client() as client:
        assert call_error(client, "snapshot").code == "not_configured"
        assert call_error(client, "snapshots").code == "not_configured"
        assert client.call("config")["repository"] is None


def test_overview_and_history_survive_a_restart(configured_daemon):
    with configured_daemon.client() as client:
        job = client.call("snapshot", {"wait": True})
        before = client.call("status")
    configured_daemon.restart()
    with configured_daemon.client() as client:
        after = client.call("status")
        jobs = client.call("jobs")
        wait_for(lambda: client.call("status")["problem"] is None and client.call("jobs"))
    assert after["last_snapshot"] == before["last_snapshot"]
    assert after["snapshot_count"] == 1 and after["total_size"] == before["total_size"]
    assert [j["id"] for j in jobs[:2]] == [job["id"], "1"] and jobs[0]["state"] == "succeeded"


def test_start_up_answers_at_once_and_reports_an_unreachable_repository(configured_daemon, repository):
    configured_daemon.stop()
    shutil.move(repository, repository.with_name("moved"))
    configured_daemon.start()
    with configured_daemon.client() as client:
        assert client.call("status")["repository"] == str(repository)
        problem = wait_for(lambda: client.call("status")["problem"])
    assert problem["code"] == "repository_not_found" and str(repository) in problem["message"]
    assert problem["since"] <= time.time()


def test_sigterm_during_a_snapshot_stops_borg_and_records_the_job(daemon, repository, large_data):
    client, job = start_large_snapshot(daemon, repository, large_data)
    with client:
        wait_for(lambda: client.call("status")["job"]["progress"].get("files"), timeout=30)
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    assert not daemon.socket.exists()
    daemon.start()
    with daemon.client() as client:
        recorded = client.call("jobs", {"limit": 1})[0]
    assert recorded["id"] == job["id"] and recorded["state"] == "failed" and recorded["error"]["code"] == "interrupted"


def test_status_is_answered_from_memory_while_a_snapshot_runs(daemon, repository, large_data):
    client, job = start_large_snapshot(daemon, repository, large_data)
    answers = 0
    with client, daemon.client(timeout=5) as poller:
        while poller.call("status")["job"] is not None:
            answers += 1
            time.sleep(0.005)
    assert answers > 50, "status must be answered all along the snapshot, while borg holds the repository"


def test_a_second_daemon_on_a_live_socket_refuses_to_start(daemon, tmp_path):
    second = subprocess.run(
        [sys.executable, "-m", "backupd", "--config", str(daemon.settings), "--socket", str(daemon.socket),
         "--state-dir", str(tmp_path / "second-state")],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode == 1 and "another daemon is listening" in second.stderr
    with daemon.client() as client:
        assert client.call("ping")["api"] == 1


def test_a_second_daemon_on_the_same_state_folder_refuses_to_start(configured_daemon, tmp_path):
    second = subprocess.run(
        [sys.executable, "-m", "backupd", "--config", str(configured_daemon.settings),
         "--socket", str(tmp_path / "second.sock"), "--state-dir", str(configured_daemon.state_dir)],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode == 1
    assert (f"cannot start: another backupd is running with the state folder {configured_daemon.state_dir}"
            in second.stderr)
    assert not (tmp_path / "second.sock").exists()
    with configured_daemon.client() as client:
        assert client.call("jobs", {"limit": 1})[0]["kind"] == "configure"
    configured_daemon.restart()
    with configured_daemon.client() as client:
        assert client.call("status")["state"] == "idle"


def test_a_state_folder_another_user_owns_stops_the_start_with_a_clear_message(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    settings = tmp_path / "backupd.toml"
    settings.write_text('[defaults]\nschedule = "manual"\n')
    refused = subprocess.run(
        [sys.executable, "-m", "backupd", "--config", str(settings), "--socket",
         str(tmp_path / "backupd.sock"), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode == 1
    assert f"cannot start: refusing the state folder {state}: the folder {state} belongs to nobody" in refused.stderr
    assert os.listdir(state) == [] and not (tmp_path / "backupd.sock").exists()


def test_a_stop_as_soon_as_the_socket_exists_is_a_clean_stop(tmp_path):
    settings = tmp_path / "backupd.toml"
    settings.write_text('[defaults]\nschedule = "manual"\n')
    socket_path = tmp_path / "early.sock"
    process = subprocess.Popen([sys.executable, "-m", "backupd", "--config", str(settings), "--socket",
                                str(socket_path), "--state-dir", str(tmp_path / "state")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.0005)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()
    assert not socket_path.exists()


def test_a_stale_socket_file_is_replaced(tmp_path):
    import socket as stdlib_socket

    path = tmp_path / "stale.sock"
    stale = stdlib_socket.socket(stdlib_socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    daemon = DaemonProcess(socket=path, state_dir=tmp_path / "state", settings=tmp_path / "none.toml",
                           log_path=tmp_path / "log")
    daemon.settings.write_text('[defaults]\nschedule = "manual"\n')
    daemon.start()
    assert daemon.stop() == 0 and not path.exists()
