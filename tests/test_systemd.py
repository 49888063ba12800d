"""The daemon's side of the systemd notify protocol, read from a real datagram socket."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.client import Client
from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[str]:
    received: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received.append(sock.recv(4096).decode())
        if any(wanted in line.split("\n") for line in received[-1:]):
            return received
    raise AssertionError(f"{wanted!r} not received; got {received}")


def drain_for(sock: socket.socket, seconds: float) -> list[str]:
    """Every message that arrives within the next seconds."""
    received = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            received.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    finally:
        sock.settimeout(10)
    return received


def drain(sock: socket.socket) -> list[str]:
    """Every message already sent, waiting at most half a second for more."""
    received = []
    sock.settimeout(0.5)
    try:
        while True:
            received.append(sock.recv(4096).decode())
    except TimeoutError:
        return received
    finally:
        sock.settimeout(10)


def test_ready_status_and_stopping(tmp_path, notify_socket, sample_data):
    path, sock = notify_socket
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg"}"\n[defaults]\nschedule = "manual"\n')
    daemon = DaemonProcess(socket=tmp_path / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "log", extra_env={"NOTIFY_SOCKET": str(path)})
    daemon.start()
    ready = messages_until(sock, "READY=1")
    assert "STATUS=not configured" in ready[-1].split("\n")
    with daemon.client() as client:
        client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})
        client.call("snapshot", {"wait": True})
    statuses = [line for message in drain(sock) for line in message.split("\n")]
    assert any(line.startswith("STATUS=running snapshot") for line in statuses)
    assert statuses[-1] == "STATUS=idle"
    assert daemon.stop() == 0
    assert "STOPPING=1" in messages_until(sock, "STOPPING=1")[-1].split("\n")


def start_with_notify(tmp_path, notify_path, settings_text: str = "", extra_env: dict | None = None) -> DaemonProcess:
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg"}"\n' + settings_text)
    daemon = DaemonProcess(socket=tmp_path / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "log",
                           extra_env={"NOTIFY_SOCKET": str(notify_path), **(extra_env or {})})
    daemon.start()
    return daemon


def test_watchdog_pings_at_half_the_interval(tmp_path, notify_socket):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, extra_env={"WATCHDOG_USEC": "400000"})
    messages_until(sock, "READY=1")
    started = time.monotonic()
    pings = [m for m in drain_for(sock, 1.5) if m == "WATCHDOG=1"]
    elapsed = time.monotonic() - started
    daemon.stop()
    assert elapsed / 0.2 - 3 <= len(pings) <= elapsed / 0.2 + 2


def test_no_watchdog_pings_for_another_process(tmp_path, notify_socket):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, extra_env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    messages_until(sock, "READY=1")
    pings = [m for m in drain_for(sock, 0.6) if m == "WATCHDOG=1"]
    daemon.stop()
    assert pings == []


def test_a_blocked_event_loop_stops_the_watchdog_pings(tmp_path, notify_socket):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, extra_env={"WATCHDOG_USEC": "200000"})
    messages_until(sock, "READY=1")
    assert "WATCHDOG=1" in drain_for(sock, 0.5)
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        assert drain_for(sock, 0.6) == []
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    assert "WATCHDOG=1" in drain_for(sock, 0.5)
    daemon.stop()


def test_reload_takes_good_settings_and_keeps_old_ones_when_broken(tmp_path, notify_socket, sample_data):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, '[defaults]\nschedule = "manual"\n')
    messages_until(sock, "READY=1")
    with daemon.client() as client:
        assert client.call("config")["schedule"] == "manual"
        daemon.settings.write_text(f'borg_base_dir = "{tmp_path / "borg"}"\n[defaults]\nschedule = "daily 04:00"\n')
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = messages_until(sock, "READY=1")
        assert any(line.startswith("RELOADING=1") for message in reloaded for line in message.split("\n"))
        assert any(line.startswith("MONOTONIC_USEC=") for message in reloaded for line in message.split("\n"))
        assert client.call("config")["schedule"] == "daily 04:00"
        daemon.settings.write_text("[defaults\nbroken")
        daemon.process.send_signal(signal.SIGHUP)
        broken = messages_until(sock, "READY=1")
        assert any("STATUS=settings not reloaded" in message for message in broken)
        assert client.call("config")["schedule"] == "daily 04:00"
        assert client.call("ping")["api"] == 1
    assert "settings not reloaded" in daemon.log()
    daemon.stop()


def test_broken_settings_at_start_serve_the_problem_and_refuse_work_until_reloaded(
        tmp_path, notify_socket, repository, sample_data):
    path, sock = notify_socket
    settings = tmp_path / "backupd.toml"
    good = f'borg_base_dir = "{tmp_path / "borg"}"\n'
    settings.write_text(good + '[defaults]\nschedule = hourly\n')
    daemon = DaemonProcess(socket=tmp_path / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "log", extra_env={"NOTIFY_SOCKET": str(path)})
    daemon.start()
    try:
        ready = messages_until(sock, "READY=1")
        assert any("STATUS=settings unreadable" in message for message in ready)
        with daemon.client() as client:
            problem = client.call("status")["problem"]
            assert (problem["code"], problem["line"], problem["column"]) == ("config_unreadable", 3, 12)
            assert str(settings) in problem["message"] and "systemctl reload backupd" in problem["message"]
            with pytest.raises(RpcError) as refused:
                client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                          "sources": [str(sample_data)]})
            assert refused.value.code == "config_unreadable" and refused.value.data == {"line": 3, "column": 12}
            assert not (repository / "config").exists()
            settings.write_text(good)
            daemon.process.send_signal(signal.SIGHUP)
            messages_until(sock, "READY=1")
            assert client.call("status")["problem"] is None
            client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                      "sources": [str(sample_data)]})
    finally:
        assert daemon.stop() == 0


def test_socket_activation(tmp_path, sample_data):
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    socket_path = tmp_path / "activated.sock"
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg"}"\n[defaults]\nschedule = "manual"\n')
    process = subprocess.Popen(
        [activate, "-l", str(socket_path), "-E", "PYTHONPATH", sys.executable, "-m", "backupd",
         "--config", str(settings), "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "unused.sock")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with Client(str(socket_path), timeout=20) as client:
            assert client.call("ping")["api"] == 1
            with Client(str(socket_path), timeout=20) as second:
                assert second.call("status")["state"] == "unconfigured"
        assert not (tmp_path / "unused.sock").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert socket_path.exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify_and_are_hardened():
    units = Path(__file__).resolve().parent.parent / "systemd"
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(units / "backupd.service")],
                              capture_output=True, text=True)
    exposure = float(security.stdout.rsplit("Overall exposure level for backupd.service:", 1)[1].split()[0])
    assert exposure <= 2.5, security.stdout
    verify = subprocess.run(["systemd-analyze", "verify", str(units / "backupd.socket"), str(units / "backupd.service")],
                            capture_output=True, text=True)
    problems = [line for line in verify.stderr.splitlines() if "is not executable" not in line]
    assert problems == [], verify.stderr


def test_under_the_journal_each_log_line_carries_its_priority(tmp_path, notify_socket):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, extra_env={"JOURNAL_STREAM": "8:12345"})
    messages_until(sock, "READY=1")
    daemon.stop()
    lines = [line for line in daemon.log().splitlines() if line]
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines)
    assert any(line.startswith("<6>backupd: listening on") for line in lines)


def test_stopping_during_a_job_asks_systemd_for_more_time(tmp_path, notify_socket, large_data):
    path, sock = notify_socket
    daemon = start_with_notify(tmp_path, path, '[defaults]\nschedule = "manual"\n')
    messages_until(sock, "READY=1")
    with daemon.client() as client:
        client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                  "sources": [str(large_data)]})
        client.call("snapshot")
    daemon.process.send_signal(signal.SIGTERM)
    stopping = [line for message in messages_until(sock, "STOPPING=1") for line in message.split("\n")]
    stopping += [line for message in drain_for(sock, 0.5) for line in message.split("\n")]
    assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in stopping)
    assert daemon.stop() == 0
