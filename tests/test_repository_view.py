"""The daemon's view of its repository stays current when plain borg changes it: real borg."""

from __future__ import annotations

from pathlib import Path

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

