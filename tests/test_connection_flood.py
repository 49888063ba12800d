"""Connections against a real daemon: idle ones are closed, and a flood of them never leaves a job
without file descriptors."""

import shutil
import socket
import threading
import time
from pathlib import Path

import msgpack
import pytest

from tests.calls import wait_for
from tests.conftest import PASSPHRASE, DaemonProcess

TIMEOUT = 10.0
IDLE_TIMEOUT = 1
HOOK_SECONDS = 3
OPEN_FILE_LIMIT = 256
FLOOD = 400


def start_daemon(tmp_path: Path, sample_data: Path, settings: str,
                 open_file_limit: tuple[int, int] | None = None) -> DaemonProcess:
    path = tmp_path / "server.toml"
    path.write_text(f'borg_base_dir = "{tmp_path / "base"}"\n{settings}\n[defaults]\nschedule = "manual"\n')
    daemon = DaemonProcess(socket=tmp_path / "run" / "backupd.sock", state_dir=tmp_path / "state", settings=path,
                           log_path=tmp_path / "daemon.log", open_file_limit=open_file_limit)
    daemon.start()
    with daemon.client() as client:
        client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})
    return daemon


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.process is not None:
            daemon.stop()


def connect(daemon: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(daemon.socket))
    return sock


def call(sock: socket.socket, method: str, params: dict | None = None, msgid: int = 1) -> list:
    sock.sendall(msgpack.packb([0, msgid, method, [params] if params else []]))
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = sock.recv(65536)
        assert data, "the daemon closed the connection"
        unpacker.feed(data)
        for message in unpacker:
            if message[0] == 1 and message[1] == msgid:
                return message


def seconds_until_closed(sock: socket.socket, since: float) -> float:
    while sock.recv(65536):
        pass
    return time.monotonic() - since


def test_idle_connections_are_closed_but_not_subscribers_or_callers_waiting_for_an_answer(
    tmp_path, sample_data, daemons
):
    sleep = shutil.which("sleep")
    daemon = start_daemon(tmp_path, sample_data,
                          f'idle_timeout = {IDLE_TIMEOUT}\n[hooks]\nbefore_snapshot = ["{sleep}", "{HOOK_SECONDS}"]')
    daemons.append(daemon)
    silent, after_a_call, subscriber, waiting = (connect(daemon) for _ in range(4))
    opened = time.monotonic()
    assert call(subscriber, "subscribe")[2] is None
    waiting.sendall(msgpack.packb([0, 7, "snapshot", [{"wait": True}]]))
    assert call(after_a_call, "ping")[2] is None
    answered = time.monotonic()

    assert IDLE_TIMEOUT * 0.9 <= seconds_until_closed(silent, opened) <= IDLE_TIMEOUT + 2
    assert IDLE_TIMEOUT * 0.9 <= seconds_until_closed(after_a_call, answered) <= IDLE_TIMEOUT + 2
    job = call(waiting, "status", msgid=8)  # the snapshot's answer comes later on the same connection
    assert job[2] is None and job[3]["state"] == "running"
    unpacker = msgpack.Unpacker(raw=False)
    while not any(message[0] == 1 and message[1] == 7 for message in list(unpacker)):
        data = waiting.recv(65536)
        assert data, "the daemon closed a connection that was waiting for its answer"
        unpacker.feed(data)
    assert time.monotonic() - opened >= HOOK_SECONDS
    assert call(subscriber, "ping", msgid=2)[2] is None
    for sock in (silent, after_a_call, subscriber, waiting):
        sock.close()


def test_a_flood_of_connections_at_a_low_open_file_limit_fails_no_snapshot(tmp_path, sample_data, daemons):
    metrics = tmp_path / "backupd.prom"
    daemon = start_daemon(tmp_path, sample_data, f'metrics_file = "{metrics}"', open_file_limit=(OPEN_FILE_LIMIT, OPEN_FILE_LIMIT))
    daemons.append(daemon)
    stop = threading.Event()

    def reconnect_flood() -> None:
        while not stop.is_set():
            try:
                connect(daemon).close()
            except OSError:
                pass

    with daemon.client() as client:
        held = []
        for _ in range(FLOOD):
            try:
                held.append(connect(daemon))
            except OSError:
                break
        flood = threading.Thread(target=reconnect_flood)
        flood.start()
        try:
            job = client.call("snapshot", {"wait": True})
            (sample_data / "changed.txt").write_text("changed")
            second = client.call("snapshot", {"wait": True})
        finally:
            stop.set()
            flood.join(TIMEOUT)
            for sock in held:
                sock.close()
    assert len(held) == FLOOD
    assert job["state"] == "succeeded" and second["state"] == "succeeded", (job, second)
    # The metrics file is written off the event loop a moment after each change.
    assert wait_for(lambda: "backupd_snapshots 2" in metrics.read_text(), timeout=TIMEOUT)
    assert "Too many open files" not in daemon.log()
    with daemon.client() as client:
        assert client.call("status")["snapshot_count"] == 2


def test_the_daemon_raises_its_open_file_limit_to_the_hard_one(tmp_path, sample_data, daemons):
    daemon = start_daemon(tmp_path, sample_data, "", open_file_limit=(OPEN_FILE_LIMIT, 4 * OPEN_FILE_LIMIT))
    daemons.append(daemon)
    limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(4 * OPEN_FILE_LIMIT)] * 2
