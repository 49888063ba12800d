"""Checkpoints of interrupted snapshots, and archives the box did not make, in a real repository."""

from __future__ import annotations

import time
from pathlib import Path

from backupd.archive_names import OwnArchives
from backupd.borg.archives import is_checkpoint
from tests.conftest import DaemonProcess
from tests.faults.conftest import raw_borg
from tests.calls import call_error, start_large_snapshot, wait_for

OWN = OwnArchives("testbox-")




def every_archive(daemon: DaemonProcess, repository: Path) -> list[str]:
    return raw_borg(daemon, "list", "--short", "--consider-checkpoints", str(repository)).stdout.split()


def test_checkpoints_are_never_snapshots_and_this_box_s_own_go_after_the_next_snapshot(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    with configured_daemon.client() as client:
        taken = client.call("snapshot", {"wait": True})["result"]["snapshot"]["name"]
    own_checkpoint = OWN.name_at(time.time() + 60) + ".checkpoint"
    foreign_checkpoint = "testbox-kitchen-2026-11-28T06:30:00Z.checkpoint"
    by_hand = "testbox-manual-before-upgrade"
    for name in (own_checkpoint, foreign_checkpoint, by_hand):
        raw_borg(configured_daemon, "create", f"{repository}::{name}", str(sample_data))
    configured_daemon.restart()

    with configured_daemon.client() as client:
        wait_for(lambda: client.call("status")["snapshot_count"] == 2)
        status = client.call("status")
        names = [entry["name"] for entry in client.call("snapshots")]
        assert status["last_snapshot"]["name"] == by_hand
        assert sorted(names) == sorted([taken, by_hand])
        assert not any(is_checkpoint(name) for name in names)
        restored = client.call("restore", {"dry_run": True, "wait": True})
        assert restored["result"]["snapshot"] == by_hand
        assert call_error(client, "restore", {"snapshot": own_checkpoint, "dry_run": True}).code == "not_found"

        second = client.call("snapshot", {"wait": True})
        assert second["state"] == "succeeded"
        assert client.call("status")["snapshot_count"] == 3

    remaining = every_archive(configured_daemon, repository)
    assert own_checkpoint not in remaining
    assert {foreign_checkpoint, by_hand, taken, second["result"]["snapshot"]["name"]} <= set(remaining)


def test_a_cancelled_snapshot_leaves_no_checkpoint_behind_the_next_one(
    daemon: DaemonProcess, repository: Path, large_data: Path
) -> None:
    client, job = start_large_snapshot(daemon, repository, large_data)
    with client:
        wait_for(lambda: (client.call("status")["job"] or {}).get("progress", {}).get("files"), timeout=30)
        client.call("cancel", {"job": job["id"]})
        wait_for(lambda: client.call("status")["job"] is None, timeout=60)
        status = client.call("status")
        assert status["last_snapshot"] is None and status["snapshot_count"] == 0
        left = every_archive(daemon, repository)
        assert all(is_checkpoint(name) for name in left), left
        client.set_timeout(120)
        finished = client.call("snapshot", {"wait": True})
        assert finished["state"] == "succeeded"
        status = client.call("status")
    assert status["snapshot_count"] == 1
    assert status["last_snapshot"]["name"] == finished["result"]["snapshot"]["name"]
    assert every_archive(daemon, repository) == [finished["result"]["snapshot"]["name"]], left
