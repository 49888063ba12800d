"""Progress numbers that add up: never past the total, counted as the overview counts, an ETA
only once it means something, and data that grew said to be more than expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupctl.render.progress import progress_line
from backupd.borg.log_json import ArchiveProgress
from backupd.progress import ETA_AFTER_SECONDS, SnapshotProgress, estimate
from tests.conftest import DaemonProcess


def test_no_eta_before_it_means_something():
    assert estimate(1_000, 100_000, elapsed=0.2).eta is None
    assert estimate(1_000, 10_000_000, elapsed=30).eta is None  # 0.01 %: a guess of days
    settled = estimate(50_000, 100_000, elapsed=ETA_AFTER_SECONDS + 1)
    assert settled.percent == 50.0 and settled.eta == pytest.approx(ETA_AFTER_SECONDS + 1)


def test_unfinished_work_stays_below_100_and_more_than_expected_says_so():
    assert estimate(99_999, 100_000, elapsed=10).percent == 99.9
    grown = estimate(150_000, 100_000, elapsed=10)
    assert (grown.percent, grown.eta, grown.more_than_expected) == (None, None, True)
    assert estimate(150_000, 100_000, elapsed=10, finished=True).percent == 100.0
    line = progress_line({"files": 3, "original_size": 150_000, "expected_size": 100_000, "more_than_expected": True,
                          "percent": None, "eta": None})
    assert line.startswith("more than expected (97.7 KiB last time)  3 files  146.5 KiB read")


async def test_a_snapshot_of_grown_data_says_more_than_expected(autojump_clock):
    import trio

    progress = SnapshotProgress(expected_size=100_000)

    def read(size: int) -> dict:
        return progress.update(ArchiveProgress(size, size, size, 10, "/data/file", False, None)).to_wire()

    assert read(0)["percent"] is None
    await trio.sleep(1)
    early = read(50_000)
    assert (early["percent"], early["eta"]) == (50.0, None)
    await trio.sleep(ETA_AFTER_SECONDS)
    assert read(60_000)["eta"] is not None
    grown = read(180_000)
    assert (grown["percent"], grown["eta"], grown["more_than_expected"]) == (None, None, True)
    assert grown["expected_size"] == 100_000


def test_restoring_one_small_file_counts_its_bytes_and_nothing_else(
    configured_daemon: DaemonProcess, sample_data: Path
):
    small = sample_data / "small.txt"
    small.write_bytes(b"twenty-five bytes of text")
    with configured_daemon.client(timeout=120) as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        small.write_bytes(b"changed")
        job = client.call("restore", {"paths": [str(small)], "wait": True})
    assert job["state"] == "succeeded", job
    assert (job["result"]["bytes"], job["result"]["files"]) == (25, 1)
    assert job["progress"]["original_size"] == 25 and job["progress"]["files"] == 1
    assert small.read_bytes() == b"twenty-five bytes of text"


def test_a_whole_restore_never_counts_past_the_snapshot(configured_daemon: DaemonProcess, sample_data: Path):
    with configured_daemon.client(timeout=120) as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        plan = client.call("restore", {"dry_run": True, "wait": True})["result"]
        client.call("subscribe")
        job = client.call("restore", {})
        seen = []
        for event in client.events():
            if event.params.get("id") == job["id"] and event.method in ("job.progress", "job.finished"):
                seen.append(event.params["progress"])
                if event.method == "job.finished":
                    break
        overview = client.call("status")
    counted = [progress for progress in seen if "total_files" in progress]
    assert counted and all(progress["files"] <= progress["total_files"] == overview["file_count"] for progress in counted)
    assert all(progress["original_size"] <= progress["total_size"] for progress in counted)
    assert counted[-1]["files"] == overview["file_count"] and counted[-1]["percent"] == 100.0
    # 100 files and a link, unchanged; the 6 folders that hold them are not counted.
    assert plan["unchanged"] == 101 == overview["file_count"] + 1


async def test_snapshot_and_restore_progress_send_percent_and_eta_even_when_unknown(autojump_clock):
    from backupd.restore.progress import RestoreProgress

    snapshot = SnapshotProgress(expected_size=None).current().to_wire()
    assert snapshot == {"files": 0, "original_size": 0, "deduplicated_size": 0, "path": None, "elapsed": 0.0,
                        "expected_size": None, "percent": None, "eta": None, "more_than_expected": False}
    restore = RestoreProgress(total_size=None, total_files=None).current(step="swapping").to_wire()
    assert restore == {"files": 0, "total_files": None, "original_size": 0, "total_size": None, "path": None,
                       "elapsed": 0.0, "percent": None, "eta": None, "more_than_expected": False, "step": "swapping"}
