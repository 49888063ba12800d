"""Who may call what: clients running as other users against a real daemon."""

import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import msgpack
import pytest

from hypothesis import given

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.frames import answers_to, fuzz_settings, hostile_frames
from tests.users import NOBODY, Connector, call_as_user, copy_client_packages

READ_METHODS = ["ping", "status", "config", "snapshots", "jobs"]
ADMIN_CALLS = [
    ("snapshot", {}),
    ("restore", {"dry_run": True}),
    ("reset", {}),
    ("configure", {"repository": "/srv/x", "passphrase": "p", "sources": ["/"]}),
    ("cancel", {"job": "1"}),
    ("export_key", {}),
    ("check", {}),
]

pytestmark = pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to run clients as other users")


@pytest.fixture(scope="module")
def client_packages():
    folder = copy_client_packages()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def call_as(client_packages):
    return partial(call_as_user, client_packages)


@pytest.fixture
def shared_daemon(tmp_path, sample_data):
    """A configured daemon whose socket other users can reach, with the given [access] table."""
    folder = Path(tempfile.mkdtemp(prefix="backupd-access-"))
    os.chmod(folder, 0o755)
    started: list[DaemonProcess] = []

    def start(access: str) -> DaemonProcess:
        settings = tmp_path / "access.toml"
        settings.write_text(f'borg_base_dir = "{tmp_path / "base"}"\nsocket_mode = "0666"\n'
                            f'[defaults]\nschedule = "manual"\n[access]\n{access}\n')
        daemon = DaemonProcess(socket=folder / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                               log_path=tmp_path / "daemon.log")
        daemon.start()
        started.append(daemon)
        with daemon.client() as client:
            if client.call("status")["state"] == "unconfigured":
                client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                          "sources": [str(sample_data)]})
                client.call("snapshot", {"wait": True})
        return daemon

    yield start
    for daemon in started:
        if daemon.process is not None:
            daemon.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_everyone_reads_by_default_but_only_admins_change_anything(shared_daemon, call_as):
    daemon = shared_daemon("")
    for method in READ_METHODS:
        reply = call_as(NOBODY, daemon.socket, method)
        assert "result" in reply, (method, reply)
    status = call_as(NOBODY, daemon.socket, "status")["result"]
    assert status["snapshot_count"] == 1
    assert PASSPHRASE not in str(call_as(NOBODY, daemon.socket, "config"))
    for method, params in ADMIN_CALLS:
        reply = call_as(NOBODY, daemon.socket, method, params)
        assert reply.get("error", {}).get("code") == "forbidden", (method, reply)
    with daemon.client() as client:
        assert client.call("status")["state"] == "idle" and client.call("status")["snapshot_count"] == 1


def test_an_unlisted_user_gets_nothing_when_readers_are_listed(shared_daemon, call_as):
    daemon = shared_daemon("read_uids = [1234]")
    for method in READ_METHODS:
        reply = call_as(NOBODY, daemon.socket, method)
        assert reply == {"error": reply["error"]} and reply["error"]["code"] == "forbidden", (method, reply)
    assert "result" in call_as(1234, daemon.socket, "status")
    assert call_as(1234, daemon.socket, "snapshot")["error"]["code"] == "forbidden"


def test_a_listed_admin_may_start_a_snapshot_and_is_named_in_the_job(shared_daemon, call_as):
    daemon = shared_daemon(f"admin_uids = [{NOBODY}]")
    job = call_as(NOBODY, daemon.socket, "snapshot", {"wait": True})["result"]
    assert job["state"] == "succeeded"
    assert job["requested_by"]["uid"] == NOBODY and job["requested_by"]["command"].startswith("python")


def test_the_socket_file_has_the_configured_mode(shared_daemon):
    daemon = shared_daemon("")
    assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o666"


@pytest.fixture(params=["", "read_uids = [1234]"], ids=["reader", "unlisted"])
def stranger(request, shared_daemon):
    """A configured daemon with one snapshot, and connections to it made by uid nobody."""
    daemon = shared_daemon(request.param)
    with daemon.client() as client:
        before = {"config": client.call("config"), "jobs": client.call("jobs")}
    with Connector(NOBODY, daemon.socket) as connector:
        yield daemon, connector, request.param == "", before


@fuzz_settings
@given(frame=hostile_frames)
def test_random_frames_from_another_user_get_no_data_they_may_not_see_and_change_nothing(stranger, frame):
    daemon, connector, may_read, before = stranger
    answers = answers_to(connector.connect(), frame)
    assert PASSPHRASE not in repr(answers)
    if not may_read:
        assert all(answer[3] is None for answer in answers), answers
        assert all(answer[2]["code"] in ("forbidden", "method_not_found", "invalid_request") for answer in answers)
    assert daemon.process.poll() is None
    with daemon.client() as client:
        assert client.call("status")["state"] == "idle"
        assert client.call("config") == before["config"]
        assert client.call("jobs") == before["jobs"]


HELD_CONNECTIONS = 300


def ping_each(sockets: list) -> list:
    """A ping on every connection, then each one's answer: the response, or None when it was closed unanswered."""
    for sock in sockets:
        try:
            sock.sendall(msgpack.packb([0, 1, "ping", []]))
        except OSError:
            pass
    answers = []
    for sock in sockets:
        sock.settimeout(10.0)
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        answers.append(msgpack.unpackb(data) if data else None)
    return answers


def test_hundreds_of_connections_from_a_stranger_and_a_reader_lock_nobody_out(shared_daemon, call_as):
    daemon = shared_daemon("read_uids = [1234, 1235]\nadmin_uids = [1236]")
    held: list = []
    try:
        with Connector(NOBODY, daemon.socket) as stranger, Connector(1234, daemon.socket) as reader, \
                Connector(1236, daemon.socket) as admin:
            strangers = [stranger.connect() for _ in range(HELD_CONNECTIONS)]
            readers = [reader.connect() for _ in range(HELD_CONNECTIONS)]
            admins = [admin.connect() for _ in range(HELD_CONNECTIONS // 2)]
            held = strangers + readers + admins
            with daemon.client(timeout=5) as client:
                assert client.call("status")["snapshot_count"] == 1
            assert "result" in call_as(1235, daemon.socket, "status")
            stranger_answers = ping_each(strangers)
            reader_answers = ping_each(readers)
            admin_answers = ping_each(admins)
            with daemon.client() as client:
                job = client.call("snapshot", {"wait": True})
    finally:
        for sock in held:
            sock.close()
    assert job["state"] == "succeeded", job
    assert all(answer is None or answer[2]["code"] == "forbidden" for answer in stranger_answers)
    assert any(answer is not None for answer in stranger_answers)
    served = [answer for answer in reader_answers if answer is not None and answer[2] is None]
    refused = [answer for answer in reader_answers if answer is not None and answer[2] is not None]
    assert len(served) == 16
    assert refused and all(answer[2]["code"] == "busy" and answer[2]["data"] == {"job": None, "connections": 16,
                                                                                  "uid": 1234}
                           for answer in refused)
    assert daemon.process.poll() is None
    assert all(answer is not None and answer[2] is None for answer in admin_answers)
