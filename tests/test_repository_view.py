"""The daemon's view of its repository stays current when plain borg changes it: real borg."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess
from tests.faults.conftest import raw_borg


def names(daemon: DaemonProcess) -> set[str]:
    with daemon.client() as client:
        return {entry["name"] for entry in client.call("snapshots")}


def test_archives_made_and_deleted_with_plain_borg_are_seen_by_the_next_job(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    with configured_daemon.client() as client:
        first = client.call("snapshot", {"wait": True})["result"]["snapshot"]["name"]
    raw_borg(configured_daemon, "create", f"{repository}::before-upgrade", str(sample_data))
    raw_borg(configured_daemon, "delete", f"{repository}::{first}")
    assert names(configured_daemon) == {first}, "nothing runs borg until a job does"

    with configured_daemon.client() as client:
        second = client.call("snapshot", {"wait": True})["result"]["snapshot"]["name"]
        status = client.call("status")
        dry_run = client.call("restore", {"snapshot": "before-upgrade", "dry_run": True, "wait": True})
    assert names(configured_daemon) == {"before-upgrade", second}
    assert status["snapshot_count"] == 2 and status["last_snapshot"]["name"] == second
    assert dry_run["state"] == "succeeded"


def saved_archives(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    """The archives the daemon saved, as a restart reads them (a clean stop writes state.json whole)."""
    return {entry["name"]: entry for entry in json.loads((daemon.state_dir / "state.json").read_text())["archives"]}


def test_the_daemons_own_snapshots_keep_what_it_recorded_when_the_list_is_read_again(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    with configured_daemon.client() as client:
        own = client.call("snapshot", {"wait": True})["result"]["snapshot"]["name"]
    raw_borg(configured_daemon, "create", f"{repository}::made-by-hand", str(sample_data))

    with configured_daemon.client() as client:
        dry_run = client.call("restore", {"snapshot": own, "dry_run": True, "wait": True})
        status = client.call("status")
    assert dry_run["state"] == "succeeded"
    assert names(configured_daemon) == {own, "made-by-hand"}, "the dry run read the list again"
    assert status["snapshot_count"] == 2
    configured_daemon.stop()
    saved = saved_archives(configured_daemon)
    assert saved[own]["sources"] == [str(sample_data)] and saved[own]["files"] > 0
    assert saved["made-by-hand"]["sources"] is None

    configured_daemon.start()
    with configured_daemon.client() as client:
        assert client.call("status")["snapshot_count"] == 2
    assert names(configured_daemon) == {own, "made-by-hand"}
