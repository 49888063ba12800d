"""The daemon's side of the systemd notify protocol, read from a real datagram socket."""

import socket
import time

import pytest

from tests.conftest import DaemonProcess


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
        client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": "pw",
                                  "sources": [str(sample_data)]})
        client.call("snapshot", {"wait": True})
    statuses = [line for message in drain(sock) for line in message.split("\n")]
    assert any(line.startswith("STATUS=running snapshot") for line in statuses)
    assert statuses[-1] == "STATUS=idle"
    assert daemon.stop() == 0
    assert "STOPPING=1" in messages_until(sock, "STOPPING=1")[-1].split("\n")
