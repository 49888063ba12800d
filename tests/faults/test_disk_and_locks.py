"""Full disks on both sides, and repository locks held by live and by dead processes."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE
from tests.faults.conftest import configure, hold_lock, raw_borg
from tests.processes import children_of
from tests.calls import wait_for

needs_mounts = pytest.mark.skipif(os.getuid() != 0, reason="needs root to mount small file systems")


@pytest.fixture
def small_mount(tmp_path):
    """A tmpfs of a chosen size, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def resize(point: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


@needs_mounts
def test_a_full_repository_disk_is_disk_full_and_recovers(make_daemon, small_mount, large_data):
    disk = small_mount("backup-disk", "40m")
    repository = disk / "repo"
    daemon = make_daemon()
    configure(daemon, repository, [large_data])
    with daemon.client() as client:
        client.set_timeout(300)
        failed = client.call("snapshot", {"wait": True})
        assert failed["state"] == "failed" and failed["error"]["code"] == "disk_full", failed["error"]
        assert client.call("status")["problem"]["code"] == "disk_full"
        resize(disk, "400m")
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        assert client.call("status")["problem"] is None
    assert raw_borg(daemon, "check", str(repository)).returncode == 0


@needs_mounts
def test_a_full_state_folder_is_a_problem_not_a_crash(make_daemon, small_mount, tmp_path, sample_data):
    state = small_mount("state", "1m")
    daemon = make_daemon(state_dir=state / "backupd")
    configure(daemon, tmp_path / "repo", [sample_data])
    filler = state / "filler"
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
        except OSError:
            pass
    with daemon.client() as client:
        # A job saves a line or two per file: the space left in the files' last pages takes a few.
        for taken in range(1, 6):
            job = client.call("snapshot", {"wait": True})
            assert job["state"] == "succeeded"
            status = client.call("status")
            if status["problem"] is not None:
                break
        assert status["problem"]["code"] == "disk_full" and str(state) in status["problem"]["message"]
        assert status["snapshot_count"] == taken
        filler.unlink()
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        assert client.call("status")["problem"] is None
    daemon.restart()
    with daemon.client() as client:
        assert client.call("status")["snapshot_count"] == taken + 1


def test_a_live_lock_is_reported_and_never_broken(make_daemon, tmp_path, sample_data):
    repository = tmp_path / "repo"
    daemon = make_daemon("lock_wait = 2")
    configure(daemon, repository, [sample_data])
    holder = hold_lock(daemon, repository, 30)
    try:
        with daemon.client() as client:
            started = time.monotonic()
            job = client.call("snapshot", {"wait": True})
            waited = time.monotonic() - started
            assert job["state"] == "failed" and job["error"]["code"] == "repository_locked"
            assert client.call("status")["problem"]["code"] == "repository_locked"
        assert holder.poll() is None and list(repository.glob("lock.exclusive/*"))
    finally:
        holder.terminate()
        holder.wait()
    with daemon.client() as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    print(f"refused after {waited:.1f} s with lock_wait = 2")


def test_a_lock_left_by_a_dead_process_is_cleared(make_daemon, tmp_path, sample_data):
    repository = tmp_path / "repo"
    daemon = make_daemon("lock_wait = 2")
    configure(daemon, repository, [sample_data])
    holder = hold_lock(daemon, repository, 60)
    sleeper = children_of(holder.pid)
    holder.kill()
    holder.wait()
    for pid in sleeper:
        os.kill(pid, signal.SIGKILL)
    assert list(repository.glob("lock.exclusive/*")), "the dead holder's lock should still be there"
    with daemon.client() as client:
        job = client.call("snapshot", {"wait": True})
        assert job["state"] == "succeeded", job["error"]
    assert not list(repository.glob("lock.exclusive/*"))
    assert PASSPHRASE not in daemon.log()


def test_a_start_up_read_that_met_a_lock_is_tried_again(make_daemon, tmp_path: Path, sample_data: Path) -> None:
    daemon = make_daemon("lock_wait = 1")
    repository = tmp_path / "repo"
    configure(daemon, repository, [sample_data])
    with daemon.client() as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    daemon.stop()
    holder = hold_lock(daemon, repository, 6)
    daemon.start()
    with daemon.client() as client:
        wait_for(lambda: (client.call("status")["problem"] or {}).get("code") == "repository_locked")
        holder.wait(timeout=30)
        started = time.monotonic()
        wait_for(lambda: client.call("status")["problem"] is None, timeout=60)
        assert client.call("status")["snapshot_count"] == 1
    assert time.monotonic() - started < 30
