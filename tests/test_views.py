"""What a reader is shown: counts, sizes, times, states and codes, never the name of a file in a
folder it cannot list. An admin works on a root-only folder with real borg while another uid
follows along as a reader."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from backupctl.protocol import Notification
from backupd.access import Level
from backupd.views import reader_error, reader_job, reader_overview, view_for
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.users import NOBODY, Connector, copy_client_packages, user_switch

as_other_users = pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                                    reason="needs root and setpriv to run clients as other users")

PRIVATE_FOLDER = "zq-private-folder"
PRIVATE_NAMES = (PRIVATE_FOLDER, "zq-salary-review.ods", "zq-medical", "zq-scan-0042.pdf", "zq-stray-file",
                 "zq-vanished-source", "zq-ledger", "zq-nowhere")
HOOK_FAILS_WHEN = "zq-hook-fails"


class Reader:
    """A connection made by another uid, and everything the daemon sent on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(60.0)
        self.received: list[Any] = []
        self._answers: dict[int, Any] = {}
        self._arrived = threading.Condition()
        self._next_id = 1
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while data := self.sock.recv(65536):
                unpacker.feed(data)
                for message in unpacker:
                    with self._arrived:
                        self.received.append(message)
                        if message[0] == 1:
                            self._answers[message[1]] = message
                        self._arrived.notify_all()
        except OSError:
            pass

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        msgid, self._next_id = self._next_id, self._next_id + 1
        self.sock.sendall(msgpack.packb([0, msgid, method, [params] if params else []], use_bin_type=True))
        with self._arrived:
            assert self._arrived.wait_for(lambda: msgid in self._answers, timeout=60), method
            _, _, error, result = self._answers[msgid]
        assert error is None, (method, error)
        return result

    def notifications(self, method: str) -> list[dict[str, Any]]:
        with self._arrived:
            return [message[2][0] for message in self.received if message[0] == 2 and message[1] == method]

    def wait_for_finished(self, job_ids: set[str]) -> None:
        deadline = time.monotonic() + 20
        while {job["id"] for job in self.notifications("job.finished")} < job_ids:
            assert time.monotonic() < deadline, "job.finished did not reach the reader"
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=10)


@pytest.fixture
def private_data(tmp_path: Path) -> Path:
    folder = tmp_path / PRIVATE_FOLDER
    (folder / "zq-medical").mkdir(parents=True)
    (folder / "zq-salary-review.ods").write_bytes(os.urandom(300_000))
    (folder / "zq-medical" / "zq-scan-0042.pdf").write_bytes(os.urandom(200_000))
    for index in range(80):
        (folder / "zq-medical" / f"zq-scan-{index:04}.pdf").write_bytes(os.urandom(256 * 1024))
    os.chmod(folder, 0o700)
    return folder


@pytest.fixture
def shared_daemon(tmp_path: Path):
    """A daemon whose socket anyone can reach and that lists no readers: every other uid reads."""
    socket_folder = Path(tempfile.mkdtemp(prefix="backupd-views-"))
    os.chmod(socket_folder, 0o755)
    hook = (f"if [ -e {tmp_path / HOOK_FAILS_WHEN} ]; then "
            f"echo 'cannot read {tmp_path / PRIVATE_FOLDER / 'zq-ledger'}' >&2; exit 3; fi")
    settings = tmp_path / "views.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "base"}"\nsocket_mode = "0666"\n'
                        f'[defaults]\nschedule = "manual"\n[hooks]\nbefore_snapshot = "{hook}"\n')
    daemon = DaemonProcess(socket=socket_folder / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "daemon.log")
    daemon.start()
    yield daemon
    daemon.stop()
    shutil.rmtree(socket_folder, ignore_errors=True)


@as_other_users
def test_a_reader_gets_counts_and_states_but_no_name_from_a_folder_it_cannot_list(
        shared_daemon, private_data, tmp_path):
    vanished_source = tmp_path / "zq-vanished-source"
    vanished_source.mkdir()
    with shared_daemon.client() as admin:
        admin.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                 "sources": [str(private_data), str(vanished_source)]})
    with Connector(NOBODY, shared_daemon.socket) as connector:
        follower = Reader(connector.connect())
        follower.call("subscribe")
        admin_follower = _connected_as_root(shared_daemon.socket)
        admin_follower.call("subscribe")
        admin_records = _admin_works_on_the_private_folder(shared_daemon, private_data, vanished_source, tmp_path)
        job_ids = {job["id"] for job in admin_records["jobs"]}
        follower.wait_for_finished(job_ids)
        admin_follower.wait_for_finished(job_ids)
        admin_follower.close()
        reader = Reader(connector.connect())
        seen = {"status": reader.call("status"), "config": reader.call("config"),
                "snapshots": reader.call("snapshots"), "jobs": reader.call("jobs", {"limit": 200})}
        seen["job"] = [reader.call("job", {"id": job["id"]}) for job in seen["jobs"]]
        follower.close()
        reader.close()

    admin_progress = [job["progress"] for job in admin_follower.notifications("job.progress") + admin_records["jobs"]]
    admin_paths = [progress["path"] for progress in admin_progress if progress.get("path")]
    assert admin_paths and all(PRIVATE_FOLDER in path for path in admin_paths)
    assert PRIVATE_FOLDER in admin_records["jobs"][3]["progress"]["path"]
    everything_admin_saw = repr(admin_records)
    assert all(name in everything_admin_saw for name in PRIVATE_NAMES), everything_admin_saw
    everything_the_reader_got = repr((follower.received, reader.received))
    assert [name for name in PRIVATE_NAMES if name in everything_the_reader_got] == []

    jobs = {job["id"]: job for job in seen["job"]}
    snapshot, dry_run, refused, restore, failed = (jobs[job["id"]] for job in admin_records["jobs"])
    assert snapshot["state"] == "succeeded" and snapshot["result"]["warning_count"] >= 1
    assert snapshot["result"]["snapshot"]["files"] >= 2 and snapshot["result"]["warnings"] is None
    assert snapshot["log"] is None
    assert dry_run["result"]["written"]["count"] >= 1 and dry_run["result"]["replaced"]["count"] == 1
    assert dry_run["result"]["removed"] == {"count": 1, "paths": None} and dry_run["result"]["targets"] is None
    assert refused["state"] == "failed" and refused["error"]["code"] == "invalid_params"
    assert refused["error"]["data"] == {"param": "paths"}
    assert restore["state"] == "succeeded" and restore["result"]["bytes"] >= 500_000
    assert failed["error"]["code"] == "hook_failed" and failed["error"]["data"]["hook"] == "before_snapshot"
    assert seen["status"]["problem"]["code"] == "hook_failed" and seen["status"]["snapshot_count"] == 1
    assert seen["config"]["sources"] is None and seen["config"]["repository"] == str(tmp_path / "repo")
    followed = follower.notifications("job.progress") + follower.notifications("job.finished")
    progress = [job["progress"] for job in followed]
    assert any(step.get("files") for step in progress) and all(step.get("path") is None for step in progress)
    assert {job["id"] for job in follower.notifications("job.finished")} >= job_ids

    said = {command: _backupctl_as_nobody(shared_daemon.socket, *command.split())
            for command in ("config", f"log {snapshot['id']}", "jobs", "status")}
    assert [name for name in PRIVATE_NAMES if name in repr(said)] == []
    assert "Sources" in said["config"] and "shown to admins only" in said["config"]
    assert "Log: shown to admins only" in said[f"log {snapshot['id']}"]
    assert "borg reported" in said[f"log {snapshot['id']}"] and "with warnings" in said["jobs"]


def _backupctl_as_nobody(socket_path: Path, *arguments: str) -> str:
    packages = copy_client_packages()
    try:
        completed = subprocess.run(
            [*user_switch(NOBODY), sys.executable, "-c", "from backupctl.cli import main; raise SystemExit(main())",
             "--socket", str(socket_path), *arguments],
            capture_output=True, text=True, timeout=60, cwd="/", env={**os.environ, "PYTHONPATH": str(packages)},
        )
    finally:
        shutil.rmtree(packages, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _connected_as_root(socket_path: Path) -> Reader:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(socket_path))
    return Reader(sock)


def _admin_works_on_the_private_folder(daemon: DaemonProcess, private: Path, vanished_source: Path,
                                       tmp_path: Path) -> dict[str, Any]:
    """A snapshot with a warning, a dry run, a refused restore, a restore and a failed snapshot, as root."""
    with daemon.client() as admin:
        shutil.rmtree(vanished_source)
        jobs = [admin.call("snapshot", {"wait": True})]
        (private / "zq-salary-review.ods").write_bytes(os.urandom(300_000))
        (private / "zq-stray-file").write_text("not in the snapshot")
        (private / "zq-medical" / "zq-scan-0042.pdf").unlink()
        jobs.append(admin.call("restore", {"paths": [str(private)], "dry_run": True, "wait": True}))
        jobs.append(admin.call("restore", {"paths": [str(tmp_path / "zq-nowhere")], "wait": True}))
        jobs.append(admin.call("restore", {"paths": [str(private)], "wait": True}))
        (tmp_path / HOOK_FAILS_WHEN).touch()
        jobs.append(admin.call("snapshot", {"wait": True}))
        (tmp_path / HOOK_FAILS_WHEN).unlink()
        return {"jobs": [admin.call("job", {"id": job["id"]}) for job in jobs], "status": admin.call("status"),
                "config": admin.call("config")}


def test_a_reader_is_sent_no_notification_the_view_does_not_know():
    reader = view_for(frozenset({Level.READ}))
    assert reader.notification(Notification("job.new_kind_of_news", {"path": "/root/x"})) is None
    admin_copy = Notification("job.new_kind_of_news", {"path": "/root/x"})
    assert view_for(frozenset({Level.READ, Level.ADMIN})).notification(admin_copy) is admin_copy


def test_the_result_of_a_kind_of_job_the_view_does_not_know_is_not_shown_to_readers():
    record = {"id": "9", "kind": "verify", "state": "succeeded", "progress": {}, "result": {"missing": ["/root/x"]},
              "error": None}
    assert reader_job(record)["result"] is None


def test_a_busy_error_shows_readers_the_running_job_as_readers_see_it():
    running = {"id": "3", "kind": "restore", "state": "running", "progress": {"files": 4, "path": "/root/x"},
               "result": None, "error": None}
    error = {"code": "busy", "message": "A restore of /root/x is running",
             "data": {"job": running, "last_lines": ["/root/x"]}}
    shown = reader_error(error)
    assert shown == {"code": "busy", "message": "Another job was running",
                     "data": {"job": {**running, "progress": {"files": 4, "path": None}}}}


def test_an_overdue_problem_keeps_its_message_and_others_get_a_sentence_for_their_code():
    overdue = {"code": "overdue", "message": "No snapshot has succeeded since 2026-01-02 03:00", "since": 1.0,
               "last_success": 0.5}
    assert reader_overview({"problem": overdue, "job": None})["problem"] == overdue
    failed = {"code": "borg_failed", "message": "borg: /root/x: Permission denied", "since": 1.0}
    assert reader_overview({"problem": failed, "job": None})["problem"] == {
        "code": "borg_failed", "message": "borg failed", "since": 1.0}


def test_a_dry_run_shows_readers_no_kept_path_and_no_mount_point():
    result = {"dry_run": True, "snapshot": "s", "targets": ["/srv/private"], "unchanged": 3, "bytes": 10,
              "written": {"count": 1, "paths": ["/srv/private/a"]}, "replaced": {"count": 0, "paths": []},
              "removed": {"count": 0, "paths": []}, "kept": {"count": 1, "paths": ["/srv/private/film.big"]},
              "space": [{"mount_point": "/srv/private", "needed": 10, "free": 99}]}
    shown = reader_job({"id": "1", "kind": "restore", "state": "succeeded", "result": result, "error": None})
    assert "/srv/private" not in repr(shown)
    assert shown["result"]["kept"] == {"count": 1, "paths": None}
    assert shown["result"]["space"] == [{"mount_point": None, "needed": 10, "free": 99}]
