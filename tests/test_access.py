"""Who may call what: clients running as other users against a real daemon."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess

NOBODY = 65534
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
    """The client and msgpack copied where any user can read them, wherever the project lives."""
    import msgpack

    import backupctl

    folder = Path(tempfile.mkdtemp(prefix="backupd-client-"))
    for package in (backupctl, msgpack):
        source = Path(package.__file__).parent
        shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def call_as(client_packages):
    return partial(call_as_user, client_packages)


def call_as_user(packages: Path, uid: int, socket: Path, method: str, params: dict | None = None) -> dict:
    """One call from a process running as uid (no groups); returns {'result'} or {'error'}."""
    script = (
        "import json, sys\n"
        "from backupctl.client import Client\n"
        "from backupctl.protocol import RpcError\n"
        f"client = Client({str(socket)!r}, timeout=30)\n"
        "try:\n"
        f"    print(json.dumps({{'result': client.call({method!r}, {params!r})}}))\n"
        "except RpcError as error:\n"
        "    print(json.dumps({'error': error.to_wire()}))\n"
    )
    completed = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={**os.environ, "PYTHONPATH": str(packages)},
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


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
