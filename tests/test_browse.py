"""Looking inside snapshots through a real daemon and real borg: browse, versions, compare."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from backupctl.protocol import RpcError
from backupd.browse.cache import FOLDER, INDEX_SUFFIX
from tests.conftest import DaemonProcess
from tests.users import NOBODY, call_as_user, copy_client_packages


def take_snapshot(daemon: DaemonProcess) -> str:
    with daemon.client() as client:
        job = client.call("snapshot", {"wait": True})
    assert job["state"] == "succeeded", job
    return job["result"]["snapshot"]["name"]


def names(listing: dict) -> list:
    return [entry["name"] for entry in listing["entries"]]


def test_browse_starts_at_the_root_and_lists_a_folder_sorted_with_its_details(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    name = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        top = client.call("browse", {"snapshot": name})
        assert top["path"] == "/" and top["kind"] == "folder"
        assert names(top) == [sample_data.parts[1]]
        data = client.call("browse", {"snapshot": name, "path": str(sample_data)})
        assert names(data) == ["empty"] + [f"folder{index}" for index in range(5)] + ["link"]
        link = data["entries"][-1]
        assert link["kind"] == "link" and link["target"] == "folder0/file0.txt"
        folder = client.call("browse", {"path": str(sample_data / "folder0")})  # the latest snapshot
        first = folder["entries"][0]
        info = os.lstat(sample_data / "folder0" / first["name"])
        assert (first["kind"], first["size"], first["mode"]) == ("file", info.st_size, "-rw-r--r--")
        assert first["mtime"] == pytest.approx(info.st_mtime, abs=1e-5)
        assert folder["total"] == 20 and names(folder) == sorted(names(folder))


def test_browse_pages_with_a_limit_and_a_cursor(configured_daemon: DaemonProcess, sample_data: Path) -> None:
    name = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        seen, cursor = [], None
        while True:
            params = {"snapshot": name, "path": str(sample_data / "folder1"), "limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = client.call("browse", params)
            assert len(page["entries"]) <= 7
            seen += names(page)
            cursor = page["cursor"]
            if cursor is None:
                break
    assert seen == sorted(f"file{index}.txt" for index in range(20))


def test_a_missing_path_or_snapshot_is_not_found(configured_daemon: DaemonProcess, sample_data: Path) -> None:
    name = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        for params in ({"snapshot": name, "path": str(sample_data / "nothing")},
                       {"snapshot": name, "path": "/elsewhere"},
                       {"snapshot": "no-such-snapshot"}):
            with pytest.raises(RpcError) as raised:
                client.call("browse", params)
            assert raised.value.code == "not_found", params
        for params in ({"path": "relative"}, {"path": "/a/../b"}, {"limit": 0}, {"cursor": "zz"}):
            with pytest.raises(RpcError) as raised:
                client.call("browse", params)
            assert raised.value.code == "invalid_params"
            assert raised.value.data["param"] == next(iter(params))


def test_versions_lists_each_snapshot_holding_a_path_and_restore_takes_it(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    target = sample_data / "folder2" / "file3.txt"
    first = take_snapshot(configured_daemon)
    time.sleep(1.1)
    target.write_bytes(b"changed")
    second = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        found = client.call("versions", {"path": str(target)})
        assert [version["snapshot"] for version in found["versions"]] == [second, first]
        assert [version["size"] for version in found["versions"]] == [7, 4096 + len(b"2/3")]
        listed = client.call("browse", {"snapshot": first, "path": str(target.parent)})
        path = str(target.parent / names(listed)[names(listed).index("file3.txt")])
        job = client.call("restore", {"snapshot": first, "paths": [path], "wait": True})
        assert job["state"] == "succeeded", job
        assert target.stat().st_size == 4096 + len(b"2/3")
        with pytest.raises(RpcError) as raised:
            client.call("versions", {"path": str(sample_data / "never")})
        assert raised.value.code == "not_found"


def test_compare_two_snapshots_and_a_snapshot_with_the_live_files(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    first = take_snapshot(configured_daemon)
    time.sleep(1.1)
    (sample_data / "folder0" / "file1.txt").unlink()
    (sample_data / "new.txt").write_bytes(b"12345")
    (sample_data / "folder3" / "file4.txt").write_bytes(b"different")
    second = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        changed = client.call("compare", {"from": first, "to": second})
        by_path = {change["path"]: change for change in changed["changes"]}
        assert by_path[str(sample_data / "new.txt")]["change"] == "added"
        assert by_path[str(sample_data / "new.txt")]["size"] == 5
        assert by_path[str(sample_data / "folder0" / "file1.txt")]["change"] == "removed"
        assert by_path[str(sample_data / "folder0" / "file1.txt")]["old_size"] == 4096 + len(b"0/1")
        assert "content" in by_path[str(sample_data / "folder3" / "file4.txt")]["what"]
        assert changed["counts"]["added"] == 1 and changed["counts"]["removed"] == 1
        (sample_data / "later.txt").write_bytes(b"x")
        live = client.call("compare", {"from": second})
        assert live["to"] is None
        assert [(change["path"], change["change"]) for change in live["changes"]] == [
            (str(sample_data), "modified"), (str(sample_data / "later.txt"), "added")] or \
            [(change["path"], change["change"]) for change in live["changes"]] == [(str(sample_data / "later.txt"), "added")]


def index_files(daemon: DaemonProcess) -> dict[str, int]:
    """The snapshot indexes in the state folder, by name and inode: a rebuilt one has a new inode."""
    return {path.name: path.stat().st_ino for path in (daemon.state_dir / FOLDER).glob(f"*{INDEX_SUFFIX}")}


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_100000_file_snapshot_is_indexed_once_and_paged_within_the_memory_bound(
        daemon: DaemonProcess, repository: Path, tmp_path: Path) -> None:
    data = tmp_path / "many"
    crowded = data / "crowded"
    crowded.mkdir(parents=True)
    for index in range(100_000):
        (crowded / f"f{index:06d}").write_bytes(b"x" * (index % 7))
    with daemon.client(timeout=600) as client:
        client.call("configure", {"repository": str(repository), "passphrase": "a long passphrase",
                                  "sources": [str(data)]})
        name = take_snapshot(daemon)
        first = client.call("browse", {"snapshot": name, "path": str(crowded), "limit": 1000})
        assert first["total"] == 100_000 and len(first["entries"]) == 1000
        built = index_files(daemon)
        page = client.call("browse", {"snapshot": name, "path": str(crowded), "limit": 1000,
                                      "cursor": first["cursor"]})
        assert names(page)[0] == "f001000" and page["entries"][0]["size"] == 1000 % 7
        last = client.call("browse", {"snapshot": name, "path": str(crowded), "limit": 1000,
                                      "cursor": client.call("browse", {"snapshot": name, "path": str(crowded),
                                                                       "limit": 1000, "cursor": page["cursor"]})["cursor"]})
        assert names(last)[0] == "f003000"
    assert daemon.process is not None
    peak = peak_rss_kib(daemon.process.pid)
    assert index_files(daemon) == built, "a later page must read the index the first one built"
    assert peak < 64 * 1024


def test_backupctl_finds_and_restores_last_weeks_version_of_a_file_alone(
        configured_daemon: DaemonProcess, sample_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from backupctl.cli import main

    def backupctl(*args: str) -> str:
        assert main(["--socket", str(configured_daemon.socket), *args]) == 0
        return capsys.readouterr().out

    target = sample_data / "folder4" / "file7.txt"
    week_ago = time.time() - 7 * 86400
    os.utime(target, (week_ago, week_ago))
    old = take_snapshot(configured_daemon)
    time.sleep(1.1)
    target.write_bytes(b"today")
    take_snapshot(configured_daemon)
    top = backupctl("ls", old)
    assert sample_data.parts[1] + "/" in top
    listed = backupctl("ls", old, str(target.parent))
    assert "file7.txt" in listed and "-rw-r--r--" in listed
    assert json.loads(backupctl("--json", "ls", str(sample_data)))["total"] == 7
    versions = backupctl("versions", str(target))
    assert old in versions and "2 snapshots" in versions
    changes = backupctl("diff", old)
    assert "content" in changes and str(target) in changes
    backupctl("restore", "--snapshot", old, "--path", str(target), "--yes")
    assert target.stat().st_size == 4096 + len(b"4/7")
    assert abs(target.stat().st_mtime - week_ago) < 1


def test_a_name_that_is_not_utf8_comes_back_exactly_and_is_browsed_and_found(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    latin1 = os.fsencode(sample_data / "folder1") + b"/caf\xe9"
    os.mkdir(latin1)
    with open(latin1 + b"/menu\xff.txt", "wb") as file:
        file.write(b"soup")
    name = take_snapshot(configured_daemon)
    with configured_daemon.client() as client:
        folder = client.call("browse", {"snapshot": name, "path": str(sample_data / "folder1")})
        assert b"caf\xe9" in names(folder)
        inside = client.call("browse", {"snapshot": name, "path": latin1})
        assert inside["path"] == latin1 and names(inside) == [b"menu\xff.txt"]
        found = client.call("versions", {"path": latin1 + b"/menu\xff.txt"})
        assert [(version["snapshot"], version["size"]) for version in found["versions"]] == [(name, 4)]


pytestmark_readers = pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                                        reason="needs root and setpriv to run a client as another user")


@pytestmark_readers
def test_a_reader_sees_sizes_and_kinds_but_no_names_and_names_no_path(tmp_path: Path, sample_data: Path) -> None:
    socket_folder = Path(tempfile.mkdtemp(prefix="backupd-browse-"))
    os.chmod(socket_folder, 0o755)
    packages = copy_client_packages()
    settings = tmp_path / "readers.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "base"}"\nsocket_mode = "0666"\n[defaults]\nschedule = "manual"\n')
    daemon = DaemonProcess(socket=socket_folder / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "daemon.log")
    daemon.start()
    try:
        with daemon.client() as client:
            client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": "a long passphrase",
                                      "sources": [str(sample_data)]})
        first = take_snapshot(daemon)
        (sample_data / "added.txt").write_bytes(b"new")
        second = take_snapshot(daemon)
        top = call_as_user(packages, NOBODY, daemon.socket, "browse", {"snapshot": first})["result"]
        assert top["path"] is None and [entry["name"] for entry in top["entries"]] == [None]
        assert top["entries"][0]["kind"] == "folder"
        refused = call_as_user(packages, NOBODY, daemon.socket, "browse", {"path": str(sample_data)})
        assert refused["error"]["code"] == "forbidden" and refused["error"]["data"]["param"] == "path"
        versions = call_as_user(packages, NOBODY, daemon.socket, "versions", {"path": str(sample_data / "added.txt")})
        assert versions["error"]["code"] == "forbidden"
        changes = call_as_user(packages, NOBODY, daemon.socket, "compare", {"from": first, "to": second})["result"]
        assert changes["counts"]["added"] == 1
        assert all(change["path"] is None for change in changes["changes"])
        assert str(sample_data) not in json.dumps(changes)
    finally:
        daemon.stop()
        shutil.rmtree(packages, ignore_errors=True)
        shutil.rmtree(socket_folder, ignore_errors=True)
