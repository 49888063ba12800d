"""File names that are not UTF-8, end to end: a real daemon, real borg, backupctl as a program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import call_error, wait_for
from tests.test_restore import restore, snapshot
from tests.tree import describe

CAFE = b"caf\xe9.txt"
FOLDER = b"d\xffir"
INNER = b"inn\xfer.txt"


@pytest.fixture
def named_data(tmp_path: Path) -> bytes:
    """A tree holding a file and a folder whose names are Latin-1, not UTF-8."""
    root = os.fsencode(tmp_path / "named")
    os.makedirs(os.path.join(root, FOLDER))
    for path, content in ((CAFE, b"coffee"), (os.path.join(FOLDER, INNER), b"inner"), (b"plain.txt", b"plain")):
        with open(os.path.join(root, path), "wb") as file:
            file.write(content)
    return root


@pytest.fixture
def named_daemon(daemon: DaemonProcess, repository: Path, named_data: bytes) -> DaemonProcess:
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [os.fsdecode(named_data)]})
    return daemon


class Subscriber(threading.Thread):
    """A client that subscribes and keeps every notification until job.finished of a restore."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon=True)
        self.client = daemon.client()
        self.client.call("subscribe")
        self.received: list = []

    def run(self) -> None:
        for notification in self.client.events():
            self.received.append(notification)
            if notification.method == "job.finished" and notification.params["kind"] == "restore":
                return


def change(root: bytes) -> None:
    with open(os.path.join(root, CAFE), "wb") as file:
        file.write(b"tea, now")
    os.unlink(os.path.join(root, FOLDER, INNER))
    with open(os.path.join(root, FOLDER, b"new\xfe"), "wb") as file:
        file.write(b"new")


def test_names_not_utf8_travel_as_bin_through_plan_restore_progress_and_history(named_daemon, named_data):
    saved = describe(Path(os.fsdecode(named_data)))
    snapshot(named_daemon)
    change(named_data)
    cafe, folder = os.path.join(named_data, CAFE), os.path.join(named_data, FOLDER)

    with named_daemon.client() as client:
        plan = client.call("restore", {"dry_run": True, "wait": True})
    assert plan["state"] == "succeeded", plan["error"]
    assert plan["result"]["targets"] == [os.fsdecode(named_data)]
    assert cafe in plan["result"]["replaced"]["paths"]
    assert os.path.join(folder, b"new\xfe") in plan["result"]["removed"]["paths"]
    assert os.path.join(folder, INNER) in plan["result"]["written"]["paths"]

    with named_daemon.client() as client:
        one = client.call("restore", {"paths": [folder], "dry_run": True, "wait": True})
        assert one["state"] == "succeeded", one["error"]
        assert one["result"]["targets"] == [folder]
        assert one["result"]["written"]["paths"] == [os.path.join(folder, INNER)]
        absent = client.call("restore", {"paths": [os.path.join(folder, b"gone\xfe")], "dry_run": True, "wait": True})
    assert absent["state"] == "failed" and absent["error"]["code"] == "not_found"
    assert absent["error"]["data"]["missing"] == [os.path.join(folder, b"gone\xfe")]
    assert "gone\\xfe" in absent["error"]["message"]

    listener = Subscriber(named_daemon)
    listener.start()
    job = restore(named_daemon, paths=[folder])
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["targets"] == [folder]
    assert sorted(os.listdir(folder)) == [INNER]
    listener.join(30)
    finished = [n.params for n in listener.received if n.method == "job.finished"]
    assert finished and finished[-1]["result"]["targets"] == [folder]
    progress = [n.params["progress"] for n in listener.received if n.method == "job.progress"]
    assert progress and all(isinstance(p.get("path"), (str, type(None))) for p in progress)

    job = restore(named_daemon)
    assert job["state"] == "succeeded", job["error"]
    assert describe(Path(os.fsdecode(named_data))) == saved

    with named_daemon.client() as client:
        records = client.call("jobs")
        assert [record["state"] for record in records[:4]] == ["succeeded", "succeeded", "failed", "succeeded"]
        logged = client.call("job", {"id": records[1]["id"]})
    assert logged["result"]["targets"] == [folder]
    assert any("d\\xffir" in line["message"] for line in logged["log"]), logged["log"]

    named_daemon.restart()
    with named_daemon.client() as client:
        assert client.call("jobs")[:5] == records[:5]
        assert client.call("job", {"id": records[1]["id"]})["log"] == logged["log"]


def test_a_path_as_text_and_as_bin_is_the_same_path(named_daemon, named_data):
    snapshot(named_daemon)
    plain = os.path.join(named_data, b"plain.txt")
    with named_daemon.client() as client:
        as_bin = client.call("restore", {"paths": [plain], "dry_run": True, "wait": True})
        as_text = client.call("restore", {"paths": [os.fsdecode(plain)], "dry_run": True, "wait": True})
    assert as_bin["result"]["targets"] == as_text["result"]["targets"] == [os.fsdecode(plain)]


def test_restore_paths_refuse_what_is_neither_text_nor_bin(named_daemon):
    with named_daemon.client() as client:
        error = call_error(client, "restore", {"paths": [7], "dry_run": True})
    assert error.code == "invalid_params" and error.data["param"] == "paths"


def backupctl_run(daemon: DaemonProcess, *args: bytes | str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "backupctl.cli", "--socket", str(daemon.socket), *args],
                          capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))


def test_backupctl_restores_a_path_given_as_bytes_and_shows_names_escaped(named_daemon, named_data):
    snapshot(named_daemon)
    change(named_data)
    folder = os.path.join(named_data, FOLDER)

    plan = backupctl_run(named_daemon, "restore", "--dry-run", "--path", folder)
    assert plan.returncode == 0, plan.stderr
    assert b"d\\xffir/new\\xfe" in plan.stdout and b"Traceback" not in plan.stderr

    as_json = backupctl_run(named_daemon, "--json", "restore", "--dry-run", "--path", folder)
    assert as_json.returncode == 0, as_json.stderr
    shown = json.loads(as_json.stdout)
    assert [os.fsencode(target) for target in shown["result"]["targets"]] == [folder]
    assert b"\\udcff" in as_json.stdout

    done = backupctl_run(named_daemon, "restore", "--yes", "--path", folder)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(folder)) == [INNER]
    wait_for(lambda: b"succeeded" in backupctl_run(named_daemon, "jobs").stdout)

    jobs = backupctl_run(named_daemon, "jobs")
    assert jobs.returncode == 0, jobs.stderr
    last = json.loads(backupctl_run(named_daemon, "--json", "jobs").stdout)[0]
    log = backupctl_run(named_daemon, "log", last["id"])
    assert log.returncode == 0, log.stderr
    assert b"d\\xffir" in log.stdout
