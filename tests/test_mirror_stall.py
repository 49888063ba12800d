"""A storage service that stops answering: the limit on a time without progress, on trio's
virtual clock; real rclone against a real S3 server (moto) behind a relay frozen with SIGSTOP;
and a real daemon whose mirror stalls, alone or while a scheduled snapshot is due."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from backupd.mirror import rclone
from backupd.mirror.config import MirrorConfig
from backupd.mirror.errors import RcloneStalled, mirror_error
from backupd.settings import Settings
from tests.conftest import DaemonProcess
from tests.s3 import FreezableRelay, S3Server
from tests.test_mirror import WAIT, assert_bucket_is_the_repository, mirror_jobs, wait_for_mirrors, wait_for_rclone

@pytest.fixture
def relay(s3: S3Server) -> Iterator[FreezableRelay]:
    with FreezableRelay(s3.port) as relay:
        yield relay


def stats_line(bytes: int = 0, transfers: int = 0, checks: int = 0, deletes: int = 0, total_bytes: int = 0,
               errors: int = 0) -> str:
    stats = {"bytes": bytes, "totalBytes": total_bytes, "transfers": transfers, "totalTransfers": 4,
             "checks": checks, "deletes": deletes, "errors": errors, "eta": None, "speed": 0}
    return json.dumps({"level": "notice", "msg": "stats", "stats": stats})


async def ended_after(limit: rclone.StallLimit, lines: list[str | None]) -> float:
    """Feed rclone's stats, one line a second (None: nothing that second), and return how long
    the wait under the limit lasted (virtual seconds); the lines run out into silence."""
    started = trio.current_time()

    async def feed() -> None:
        for line in lines:
            await trio.sleep(1)
            if line is not None:
                _, _, stats = rclone.parse_log_line(line)
                assert stats is not None
                limit.saw(stats)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        with limit.scope:
            await trio.sleep_forever()
        nursery.cancel_scope.cancel()
    assert limit.reached
    return trio.current_time() - started


async def test_no_stats_at_all_ends_the_wait_at_the_limit(autojump_clock) -> None:
    assert await ended_after(rclone.StallLimit(120), []) == 120


async def test_each_change_of_what_rclone_got_done_pushes_the_end_back(autojump_clock) -> None:
    steady = [stats_line(bytes=1000 * second) for second in range(1, 600)]
    assert await ended_after(rclone.StallLimit(120), steady) == 599 + 120
    for field in ("transfers", "checks", "deletes"):
        counted = [stats_line(**{field: second // 100}) for second in range(1, 600)]
        assert await ended_after(rclone.StallLimit(120), counted) == 500 + 120, field


async def test_the_same_stats_again_totals_and_errors_are_not_progress(autojump_clock) -> None:
    lines = [stats_line(bytes=5000)] + [stats_line(bytes=5000, total_bytes=9000 + second, errors=second // 30)
                                        for second in range(1, 400)]
    assert await ended_after(rclone.StallLimit(120), lines) == 1 + 120


async def test_a_slow_link_with_gaps_shorter_than_the_limit_goes_on(autojump_clock) -> None:
    gappy = [stats_line(bytes=second) if second % 100 == 0 else None for second in range(1, 1001)]
    assert await ended_after(rclone.StallLimit(120), gappy) == 1000 + 120


def test_rclone_s_own_idle_limit_is_longer_than_the_stall_limit_and_the_settings_default_is_the_same() -> None:
    """A request rclone gave up on and sent again refills the socket buffers: counted as new
    bytes, it would hide a stall. So rclone's --timeout comes after the daemon's limit."""
    for seconds in (5, 120, 600.5):
        timeouts = [arg for arg in rclone.argv(rclone.list_folder("mirror:b"), stall_seconds=seconds)
                    if arg.startswith("--timeout=")]
        assert len(timeouts) == 1 and int(timeouts[0].removeprefix("--timeout=").removesuffix("s")) > seconds
    assert Settings().mirror_stall_seconds == rclone.STALL_SECONDS


def test_a_stall_is_unreachable_and_says_for_how_long() -> None:
    error = mirror_error(RcloneStalled(-15, ["a request failed"], 120.0), "s3://edgebox/kitchen")
    assert error.code == "repository_unreachable"
    assert error.message == "The storage service of s3://edgebox/kitchen stopped answering for 120 s"
    assert error.data == {"exit_code": -15}


# Real rclone, a real S3 server, a relay frozen with SIGSTOP.


def remote(s3: S3Server, bucket: str, relay: FreezableRelay) -> MirrorConfig:
    return MirrorConfig(provider=relay.endpoint, bucket=bucket, prefix="box", access_key_id=s3.access_key_id,
                        secret_access_key=s3.secret_access_key)


async def test_rclone_that_gets_no_answer_is_stopped_at_the_limit(
    s3: S3Server, bucket: str, relay: FreezableRelay
) -> None:
    mirror = remote(s3, bucket, relay)
    started: list[int] = []
    await rclone.run_rclone(rclone.list_folder(mirror.bucket_root), mirror.rclone_environment(), (),
                            on_start=started.append, stall_seconds=3)
    relay.freeze()
    with pytest.raises(RcloneStalled) as stalled:
        await rclone.run_rclone(rclone.list_folder(mirror.bucket_root), mirror.rclone_environment(), (),
                                on_start=started.append, stall_seconds=3)
    assert stalled.value.seconds == 3 and stalled.value.exit_code < 0  # stopped by the daemon's signal
    assert mirror_error(stalled.value, mirror.location()).code == "repository_unreachable"
    assert not Path(f"/proc/{started[-1]}").exists()


async def test_a_slow_upload_that_keeps_going_is_not_a_stall(
    s3: S3Server, bucket: str, relay: FreezableRelay, tmp_path: Path
) -> None:
    mirror = remote(s3, bucket, relay)
    folder = tmp_path / "repository"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "1").write_bytes(os.urandom(2 * 1024 * 1024))
    limit = 3
    seen: list[rclone.TransferStats] = []
    result = await rclone.run_rclone(rclone.upload_one(str(folder), mirror.remote, "data/1"),
                                     mirror.rclone_environment(), (), upload_limit_kib=256,
                                     on_stats=seen.append, stall_seconds=limit)
    assert result.stats is not None and result.stats.transfers == 1
    assert len(seen) > limit  # it ran longer than the limit: stats came each second
    assert set(s3.objects(bucket, "box/")) == {"box/data/1"}


# A real daemon: real borg, rclone and moto, the relay frozen under the mirror.


def with_settings(daemon: DaemonProcess, lines: str) -> None:
    daemon.settings.write_text(lines + daemon.settings.read_text())
    daemon.restart()


def job_log_lines(client: Any, job_id: str) -> list[str]:
    return [line["message"] for line in client.call("job", {"id": job_id})["log"]]


def test_a_mirror_the_service_stops_answering_fails_at_the_limit_and_the_next_completes(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str,
    relay: FreezableRelay
) -> None:
    with_settings(configured_daemon, "mirror_stall_seconds = 10\n")
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        (sample_data / "new.bin").write_bytes(os.urandom(1024 * 1024))
        relay.freeze()
        client.call("snapshot", {"wait": True})  # local: the frozen service does not hold it up
        failed = wait_for_mirrors(configured_daemon, 2)
        assert (failed["state"], failed["trigger"]) == ("failed", "schedule"), failed
        assert failed["error"]["code"] == "repository_unreachable"
        assert failed["error"]["message"].endswith("stopped answering for 10 s"), failed["error"]
        logged = job_log_lines(client, failed["id"])
        assert "running rclone lsjson" in logged  # the listing every mirror begins with
        assert "rclone lsjson made no progress for 10 s: stopping it" in logged, logged
        status = client.call("status")
        assert status["mirror"]["last_error"]["code"] == "repository_unreachable"
        relay.thaw()
        again = client.call("mirror", {"wait": True})
        assert again["state"] == "succeeded", again
        logged = job_log_lines(client, again["id"])
        steps = ["uploading the segments that end a transaction, one at a time", "uploading the index"]
        assert [line for line in logged if line in steps] == steps, logged
        assert any(line.startswith("compared ") and "by size and hash" in line for line in logged), logged
        assert client.call("status")["mirror"]["last_error"] is None
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def next_minute_cron(at_least: float) -> tuple[str, float]:
    """A cron schedule of one minute of the day at least `at_least` seconds from now, and when
    that minute begins."""
    due = (int(time.time() + at_least) // 60 + 1) * 60
    local = time.localtime(due)
    return f"{local.tm_min} {local.tm_hour} * * *", float(due)


def test_a_scheduled_snapshot_stops_a_mirror_the_service_stopped_answering_and_it_completes_afterwards(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str,
    relay: FreezableRelay
) -> None:
    with_settings(configured_daemon, "mirror_stall_seconds = 600\n")  # only the snapshot can end it
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        (sample_data / "new.bin").write_bytes(os.urandom(1024 * 1024))
        relay.freeze()
        stalled = client.call("mirror")
        assert stalled["state"] == "running"
        wait_for_rclone(configured_daemon)
        schedule, due = next_minute_cron(at_least=5)
        client.call("change", {"schedule": schedule})
        assert client.call("status")["next_run"] == due

        deadline = time.monotonic() + (due - time.time()) + WAIT
        while (snapshot := next((job for job in client.call("jobs") if job["kind"] == "snapshot"
                                 and job["trigger"] == "schedule"), None)) is None:
            assert time.monotonic() < deadline, configured_daemon.log()
            time.sleep(0.1)
        assert snapshot["state"] == "running" or snapshot["state"] == "succeeded", snapshot
        gave_way = client.call("job", {"id": stalled["id"]})
        while gave_way["state"] == "running":
            time.sleep(0.1)
            gave_way = client.call("job", {"id": stalled["id"]})
        assert (gave_way["state"], gave_way["error"]["code"]) == ("cancelled", "cancelled"), gave_way
        assert f"The mirror gave way to the automatic snapshot (job {snapshot['id']})" in gave_way["error"]["message"]
        relay.thaw()

        deadline = time.monotonic() + WAIT
        while (done := client.call("job", {"id": snapshot["id"]}))["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert done["state"] == "succeeded", done
        print(f"\nthe mirror let go {gave_way['finished'] - due:.2f} s after the snapshot was due; "
              f"the snapshot ended {done['finished'] - due:.2f} s after")
        deadline = time.monotonic() + WAIT
        while not (after := [job for job in mirror_jobs(client) if int(job["id"]) > int(snapshot["id"])]) \
                or after[0]["state"] == "running":
            assert time.monotonic() < deadline, configured_daemon.log()
            time.sleep(0.1)
        assert (after[0]["state"], after[0]["trigger"]) == ("succeeded", "schedule"), after[0]
        status = client.call("status")
        assert status["problem"] is None and status["mirror"]["state"] == "current", status
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)
