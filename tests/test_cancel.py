"""A cancelled job ends within about two seconds, measured with real borg; a cancelled restore
leaves every target as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from backupctl.client import Client
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import wait_for

CANCEL_BUDGET = 2.5


def contents(folder: Path) -> dict[str, str]:
    """Every entry under folder with its type and, for files, a digest of its bytes."""
    described = {}
    for root, folders, files in os.walk(folder):
        for name in folders:
            described[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                described[os.path.relpath(path, folder)] = hashlib.sha256(file.read()).hexdigest()
    return described


def cancel_once_under_way(client: Client, job: dict) -> tuple[float, dict]:
    """Cancel the job once it has made progress; the seconds until it finished, and its record."""
    wait_for(lambda: ((client.call("status")["job"] or {}).get("progress") or {}).get("original_size"), interval=0.02)
    started = time.monotonic()
    assert client.call("cancel", {"job": job["id"]}) == {"state": "running"}
    for event in client.events():
        if event.method == "job.finished" and event.params["id"] == job["id"]:
            return time.monotonic() - started, event.params
    raise AssertionError("the connection closed before the job finished")


def test_a_cancelled_snapshot_ends_within_two_seconds(daemon: DaemonProcess, repository: Path, large_data: Path):
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(large_data)]})
        client.call("subscribe")
        took, finished = cancel_once_under_way(client, client.call("snapshot"))
        assert finished["state"] == "cancelled"
        assert took < CANCEL_BUDGET, f"the snapshot took {took:.1f} s to stop"
        client.set_timeout(120)
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"


def test_a_cancelled_restore_ends_within_two_seconds_and_leaves_every_target_as_it_was(
    daemon: DaemonProcess, repository: Path, large_data: Path, tmp_path: Path
):
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(large_data, first)
    second.mkdir()
    (second / "note.txt").write_text("kept in the snapshot")
    with daemon.client(timeout=120) as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(first), str(second)]})
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        (first / "blob00.bin").write_bytes(b"changed since the snapshot")
        (first / "added.txt").write_text("not in the snapshot")
        (second / "note.txt").write_text("changed too")
        before = {target: contents(target) for target in (first, second)}
        beside = sorted(os.listdir(tmp_path))
        client.call("subscribe")
        took, finished = cancel_once_under_way(client, client.call("restore", {}))
        assert finished["state"] == "cancelled"
        assert took < CANCEL_BUDGET, f"the restore took {took:.1f} s to stop"
        assert {target: contents(target) for target in (first, second)} == before
        assert sorted(os.listdir(tmp_path)) == beside
