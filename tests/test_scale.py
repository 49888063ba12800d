"""What grows with the data stays flat: a restore's memory and the daemon's CPU beside borg's,
measured on a real daemon restoring tens of thousands of files with real borg."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, DaemonProcess
from tests.test_browse import peak_rss_kib, take_snapshot
from tests.calls import wait_for

FILES = 40_000
FOLDERS = 200
MAX_PEAK_RSS_KIB = 64 * 1024


@pytest.fixture
def many_files(tmp_path: Path) -> Path:
    root = tmp_path / "many"
    for folder in range(FOLDERS):
        (root / f"d{folder:03d}").mkdir(parents=True)
    for index in range(FILES):
        (root / f"d{index % FOLDERS:03d}" / f"file-with-a-longer-name-{index:06d}.txt").write_bytes(b"x" * (index % 13))
    return root


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's own CPU time and that of the children it has reaped (borg)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / ticks
    children = (int(fields[13]) + int(fields[14])) / ticks
    return own, children


def restore(daemon: DaemonProcess, **params: object) -> dict:
    with daemon.client(timeout=900) as client:
        job = client.call("restore", {**params, "wait": True})
    assert job["state"] == "succeeded", job["error"]
    return job


def cleaned_up(daemon: DaemonProcess) -> bool:
    """The previous content is deleted after the restore has answered."""
    wait_for(lambda: not list((daemon.state_dir / "restores").glob("*.json")), timeout=300)
    return True


def test_a_dry_run_of_many_files_stays_within_the_memory_bound(
        daemon: DaemonProcess, repository: Path, many_files: Path) -> None:
    with daemon.client(timeout=900) as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(many_files)]})
    take_snapshot(daemon)
    (many_files / "d000" / "file-with-a-longer-name-000000.txt").unlink()
    (many_files / "d001" / "made-later").write_bytes(b"new")
    plan = restore(daemon, dry_run=True)["result"]
    assert plan["written"] == {"count": 1, "paths": [str(many_files / "d000" / "file-with-a-longer-name-000000.txt")]}
    assert plan["removed"] == {"count": 1, "paths": [str(many_files / "d001" / "made-later")]}
    assert plan["unchanged"] == FILES - 1  # files, as the overview counts them; folders are not
    assert daemon.process is not None
    peak = peak_rss_kib(daemon.process.pid)
    print(f"dry run of {FILES:,} files: daemon peak RSS {peak / 1024:.1f} MiB")
    assert peak < MAX_PEAK_RSS_KIB


def test_the_daemon_spends_a_small_share_of_borgs_cpu_restoring_many_files(
        daemon: DaemonProcess, repository: Path, many_files: Path) -> None:
    with daemon.client(timeout=900) as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(many_files)]})
    take_snapshot(daemon)
    assert daemon.process is not None
    (many_files / "d000" / "file-with-a-longer-name-000000.txt").unlink()
    own_before, borg_before = cpu_seconds(daemon.process.pid)
    job = restore(daemon)
    own_after, borg_after = cpu_seconds(daemon.process.pid)
    own, borg = own_after - own_before, borg_after - borg_before
    assert (many_files / "d000" / "file-with-a-longer-name-000000.txt").exists()
    assert job["progress"]["files"] >= FILES
    assert cleaned_up(daemon)
    # Deleting the previous content, after the answer, is the daemon's rm -rf: counted apart.
    clean_up = cpu_seconds(daemon.process.pid)[0] - own_after
    print(f"restore of {FILES:,} files: daemon {own:.2f} s of CPU until the data is in place, borg {borg:.2f} s "
          f"({own / borg:.1%}); deleting the previous content {clean_up:.2f} s")
    # Measured at 3.5-4.8 % on an idle machine (the bound is 5 % at 300,000 files, where
    # the daemon's fixed costs weigh less); reading every list line in full cost 21 %. The
    # bound here leaves room for a loaded machine and still catches a cost per item.
    assert own <= 0.12 * borg
