"""configure end to end: a real daemon process creates or connects to a real borg repository."""

import json
import os

from tests.calls import call_error
from tests.conftest import PASSPHRASE, DaemonProcess


def test_configure_creates_a_repository_and_the_overview_shows_it(daemon, repository, sample_data):
    with daemon.client() as client:
        assert client.call("status")["state"] == "unconfigured"
        result = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                           "sources": [str(sample_data)]})
        assert result == {"created": True, "snapshot_count": 0}
        status = client.call("status")
        config = client.call("config")
    assert (repository / "config").exists()
    assert status["state"] == "idle" and status["repository"] == str(repository)
    assert status["snapshot_count"] == 0 and status["last_snapshot"] is None and status["problem"] is None
    assert config["repository"] == str(repository) and config["sources"] == [str(sample_data)]
    assert PASSPHRASE not in json.dumps(config) + json.dumps(status)


def test_connect_to_an_existing_repository_with_snapshots(configured_daemon, repository, sample_data, tmp_path):
    with configured_daemon.client() as client:
        client.call("snapshot", {"wait": True})
        client.call("snapshot", {"wait": True})
    fresh_box = tmp_path / "fresh-box.toml"
    fresh_box.write_text(f'borg_base_dir = "{tmp_path / "fresh-box-borg"}"\n[defaults]\nschedule = "manual"\n')
    other = DaemonProcess(socket=tmp_path / "other.sock", state_dir=tmp_path / "other-state",
                          settings=fresh_box, log_path=tmp_path / "other.log")
    other.start()
    try:
        with other.client() as client:
            result = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                               "sources": [str(sample_data)]})
            status = client.call("status")
            snapshots = client.call("snapshots")
    finally:
        other.stop()
    assert result == {"created": False, "snapshot_count": 2}
    assert status["snapshot_count"] == 2 and status["file_count"] == 100
    assert len(snapshots) == 2 and snapshots[0]["time"] >= snapshots[1]["time"]
    assert status["last_snapshot"]["name"] == snapshots[0]["name"]


def test_wrong_passphrase_is_refused_and_keeps_the_previous_configuration(configured_daemon, repository, sample_data):
    with configured_daemon.client() as client:
        error = call_error(client, "configure", {"repository": str(repository), "passphrase": "wrong",
                                                 "sources": [str(sample_data)]})
        config = client.call("config")
    assert error.code == "passphrase_wrong"
    assert error.data["borg_msgid"] and error.data["exit_code"] >= 2
    assert "wrong" not in json.dumps(error.data["last_lines"])
    assert config["repository"] == str(repository)


def test_missing_repository_path(daemon, sample_data, tmp_path):
    with daemon.client() as client:
        error = call_error(client, "configure", {"repository": str(tmp_path / "no" / "such" / "repo"),
                                                 "passphrase": PASSPHRASE, "sources": [str(sample_data)]})
        assert error.code == "repository_not_found"
        assert client.call("status")["state"] == "unconfigured"


def test_an_empty_folder_such_as_a_new_disk_holds_a_new_repository(daemon, tmp_path, sample_data):
    disk = tmp_path / "usb"
    disk.mkdir()
    with daemon.client() as client:
        result = client.call("configure", {"repository": str(disk), "passphrase": PASSPHRASE,
                                           "sources": [str(sample_data)]})
        assert result == {"created": True, "snapshot_count": 0}
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    assert (disk / "config").is_file()


def test_a_new_file_system_or_a_folder_of_other_files_is_not_taken(daemon, tmp_path, sample_data):
    fresh = tmp_path / "fresh-disk"
    (fresh / "lost+found").mkdir(parents=True)
    busy_folder = tmp_path / "documents"
    busy_folder.mkdir()
    (busy_folder / "letter.txt").write_text("dear")
    with daemon.client() as client:
        error = call_error(client, "configure", {"repository": str(fresh), "passphrase": PASSPHRASE,
                                                 "sources": [str(sample_data)]})
        assert error.code == "invalid_params" and error.data == {"param": "repository"}
        assert str(fresh / "backups") in error.message
        error = call_error(client, "configure", {"repository": str(busy_folder), "passphrase": PASSPHRASE,
                                                 "sources": [str(sample_data)]})
        assert error.code == "repository_invalid"
    assert os.listdir(fresh) == ["lost+found"] and os.listdir(busy_folder) == ["letter.txt"]
