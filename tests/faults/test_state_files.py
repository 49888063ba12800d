"""Torn or corrupt state files at start: detected, set aside, reported; the repository is never touched."""

import pytest

from tests.faults.conftest import archive_names, configure
from tests.calls import wait_for

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\xff not json at all",
    "wrong shape": lambda text: "[1, 2, 3]" if text.startswith("{") else '{"id": 5}',
}


def take_snapshots(daemon, count):
    with daemon.client() as client:
        for _ in range(count):
            assert client.call("snapshot", {"wait": True})["state"] == "succeeded"


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("document", ["state", "jobs"])
def test_unreadable_state_is_rebuilt_from_the_repository(make_daemon, tmp_path, sample_data, document, damage):
    repository = tmp_path / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [sample_data])
    take_snapshots(daemon, 2)
    daemon.stop()
    path = daemon.state_dir / f"{document}.json"
    path.write_text(DAMAGE[damage](path.read_text()))
    daemon.start()
    with daemon.client() as client:
        status = client.call("status")
        assert status["state"] == "idle" and status["repository"] == str(repository)
        if status["problem"] is not None:
            assert status["problem"]["code"] == "state_unreadable"
        settled = wait_for(lambda: (s := client.call("status"))["snapshot_count"] == 2 and s["problem"] is None and s)
        assert settled["last_snapshot"] is not None
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    assert len(list(daemon.state_dir.glob(f"{document}.json.unreadable-*"))) == 1
    assert len(archive_names(daemon, repository)) == 3


@pytest.mark.parametrize("damage", DAMAGE)
def test_an_unreadable_configuration_is_reported_and_the_archives_stay(make_daemon, tmp_path, sample_data, damage):
    repository = tmp_path / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [sample_data])
    take_snapshots(daemon, 1)
    daemon.stop()
    path = daemon.state_dir / "config.json"
    path.write_text(DAMAGE[damage](path.read_text()))
    daemon.start()
    with daemon.client() as client:
        status = client.call("status")
    assert status["state"] == "unconfigured" and status["problem"]["code"] == "config_unreadable"
    aside = list(daemon.state_dir.glob("config.json.unreadable-*"))
    assert len(aside) == 1 and aside[0].stat().st_mode & 0o777 == 0o600
    assert len(archive_names(daemon, repository)) == 1
    assert configure(daemon, repository, [sample_data]) == {"created": False, "snapshot_count": 1}
    with daemon.client() as client:
        assert client.call("status")["problem"] is None
