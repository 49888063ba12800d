"""A snapshot that missed files is a problem until one completes cleanly: real borg, real daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.users import NOBODY, call_as_user, copy_client_packages, folder_others_can_reach


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon whose socket other users can reach; it lists no readers, so every uid reads."""
    settings = tmp_path / "backupd.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "borg-base"}"\nhostname = "testbox"\n'
                        'socket_mode = "0666"\n[defaults]\nschedule = "manual"\n')
    with folder_others_can_reach() as shared:
        process = DaemonProcess(socket=shared / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                                log_path=tmp_path / "backupd.log")
        process.start()
        yield process
        process.stop()


def test_missed_files_are_a_problem_until_a_clean_snapshot(
    daemon: DaemonProcess, repository: Path, sample_data: Path, tmp_path: Path
) -> None:
    vanishing = tmp_path / "app-data"
    vanishing.mkdir()
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data), str(vanishing)]})
        vanishing.rmdir()
        incomplete = client.call("snapshot", {"wait": True})
        problem = client.call("status")["problem"]
    assert incomplete["state"] == "succeeded" and incomplete["result"]["warning_count"] == 1
    assert problem["code"] == "snapshot_incomplete"
    assert "could not read 1 item" in problem["message"] and str(vanishing) in problem["message"]

    reader_view = call_as_user(copy_client_packages(), NOBODY, daemon.socket, "status")["result"]["problem"]
    assert reader_view["code"] == "snapshot_incomplete" and str(vanishing) not in reader_view["message"]

    vanishing.mkdir()
    with daemon.client() as client:
        clean = client.call("snapshot", {"wait": True})
        assert clean["state"] == "succeeded" and clean["result"]["warning_count"] == 0
        assert client.call("status")["problem"] is None
