"""The bucket is a repository at every moment: rclone killed at many instants of uploads of
several segments, snapshots cancelled and killed, each time the bucket downloaded afresh and
opened with borg itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess
from tests.faults.conftest import archive_names, borg_env, raw_borg
from tests.s3 import Relay, S3Server
from tests.test_mirror import (
    assert_bucket_is_the_repository,
    mirror_jobs,
    rclone_children,
    slow_uploads,
    snapshot_of_new_data,
    wait_for_mirrors,
    wait_for_step,
)

WAIT = 120.0
SEGMENT_BYTES = 512 * 1024
# Where in an upload each kill lands: spread over the steps, from the listing to the deletions.
KILL_DELAYS = (0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.1, 2.5, 0.1, 0.25, 0.4, 0.7, 0.9,
               1.1, 1.4, 1.7, 2.0, 3.0)


def bucket_state(s3: S3Server, bucket_name: str, prefix: str, daemon: DaemonProcess, into: Path) -> list[str] | None:
    """The archives borg lists in a fresh download of the bucket after `borg check` passed on
    it; None while the prefix is no repository yet (nothing was ever mirrored whole)."""
    if into.exists():
        subprocess.run(["rm", "-rf", str(into)], check=True)
    into.mkdir()
    s3.download(bucket_name, prefix, into)
    if not (into / "config").exists():
        return None
    env = borg_env(daemon)
    checked = subprocess.run([sys.executable, "-m", "borg", "check", str(into)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, f"borg check failed on the bucket:\n{checked.stderr}"
    listed = subprocess.run([sys.executable, "-m", "borg", "list", "--short", str(into)], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    return sorted(listed.stdout.split())


def wait_until_idle(daemon: DaemonProcess, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while client.call("status")["job"] is not None:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)


def kill_rclone_after(daemon: DaemonProcess, delay: float) -> bool:
    """SIGKILL the daemon's rclone, whichever step it is in, `delay` seconds from now."""
    assert daemon.process is not None
    time.sleep(delay)
    killed = False
    for pid in rclone_children(daemon.process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed = True
        except ProcessLookupError:
            pass
    return killed


def small_segments(daemon: DaemonProcess, repository: Path) -> None:
    raw_borg(daemon, "config", str(repository), "max_segment_size", str(SEGMENT_BYTES))


def test_rclone_killed_at_many_instants_leaves_a_repository_borg_checks(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str,
    tmp_path: Path,
) -> None:
    small_segments(configured_daemon, repository)
    slow_uploads(configured_daemon, 1024)
    consistent_states: list[list[str]] = [[]]
    kills = 0
    ever_whole = False
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        for round_number, delay in enumerate(KILL_DELAYS):
            if round_number % 3 == 0:
                # Sizes vary so that small segments that end a transaction race big ones.
                size = (200 + 700 * (round_number % 4)) * 1024
                (sample_data / f"round-{round_number}.bin").write_bytes(os.urandom(size))
                job = client.call("snapshot", {"wait": True})
                assert job["state"] == "succeeded", job
                consistent_states.append(sorted(archive_names(configured_daemon, repository)))
            client.call("mirror", {})
            kills += kill_rclone_after(configured_daemon, delay)
            wait_until_idle(configured_daemon)
            listed = bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download")
            if listed is None:
                assert not ever_whole, "the bucket stopped being a repository"
                continue
            ever_whole = True
            assert listed in consistent_states, (listed, consistent_states)
        assert kills >= 15, f"only {kills} kills landed on a running rclone"
        final = client.call("mirror", {"wait": True})
        assert final["state"] == "succeeded", final
        wait_until_idle(configured_daemon)
    assert bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download") == consistent_states[-1]
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


@pytest.mark.parametrize("stop", ["cancel", "kill"])
def test_a_snapshot_cut_short_never_wedges_the_mirror(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, large_data: Path, s3: S3Server,
    bucket: str, tmp_path: Path, stop: str,
) -> None:
    small_segments(configured_daemon, repository)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_until_idle(configured_daemon)
        client.call("change", {"sources": [str(sample_data), str(large_data)]})
        running = client.call("snapshot", {})
        deadline = time.monotonic() + WAIT
        while len(list((repository / "data").rglob("*"))) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if stop == "cancel":
            client.call("cancel", {"job": running["id"]})
        else:
            configured_daemon.stop(signal.SIGKILL)
    if stop == "kill":
        configured_daemon.start()
    with configured_daemon.client() as client:
        wait_until_idle(configured_daemon)
        # What an earlier version uploaded: the unfinished segments past the index.
        committed_index = max(int(path.name[6:]) for path in repository.glob("index.*"))
        unfinished = sorted((path for path in (repository / "data").rglob("*")
                             if path.is_file() and int(path.name) > committed_index), key=lambda path: int(path.name))
        for path in unfinished:
            s3.client().put_object(Bucket=bucket, Key=f"testbox/{path.relative_to(repository).as_posix()}",
                                   Body=path.read_bytes())
        after_cut = client.call("mirror", {"wait": True})
        assert after_cut["state"] == "succeeded", after_cut
        assert unfinished and all(path.exists() for path in unfinished)
        mirror = client.call("status")["mirror"]
        assert (mirror["state"], mirror["bytes_waiting"]) == ("current", 0), mirror  # borg's unfinished work waits for no one
        client.call("change", {"sources": [str(sample_data)]})
        (sample_data / "after.bin").write_bytes(os.urandom(3 * SEGMENT_BYTES))
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        wait_until_idle(configured_daemon)
        again = client.call("mirror", {"wait": True})
        assert again["state"] == "succeeded", again
        assert client.call("mirror", {"wait": True, "compare_all": True})["state"] == "succeeded"
        assert client.call("status")["mirror"]["state"] == "current"
        names = sorted(archive_names(configured_daemon, repository))
    assert bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download") == names
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def test_damage_a_comparison_found_stays_a_problem_until_a_mirror_replaced_it(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str,
    tmp_path: Path,
) -> None:
    slow_uploads(configured_daemon, 1024)
    snapshot_of_new_data(configured_daemon, sample_data)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        segment = max((path for path in (repository / "data").rglob("*") if path.is_file()),
                      key=lambda path: path.stat().st_size)
        key = f"testbox/{segment.relative_to(repository).as_posix()}"
        damaged = bytearray(segment.read_bytes())
        damaged[len(damaged) // 3] ^= 0x01
        s3.client().put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
        client.call("mirror", {"compare_all": True})
        wait_for_step(configured_daemon, "uploading new segments")
        kill_rclone_after(configured_daemon, 0)
        wait_until_idle(configured_daemon)
        failed = mirror_jobs(client)[0]
        assert failed["state"] == "failed", failed
        assert client.call("status")["mirror"]["state"] == "failed"
        configured_daemon.restart()
        repaired = client_call(configured_daemon, "mirror", {"wait": True})
        assert repaired["state"] == "succeeded", repaired
        assert repaired["result"]["repaired_files"] == 1
    assert s3.objects(bucket, key)[key] == segment.read_bytes()
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)
    assert bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download") \
        == sorted(archive_names(configured_daemon, repository))


def client_call(daemon: DaemonProcess, method: str, params: dict[str, object]) -> dict[str, object]:
    with daemon.client() as client:
        result: dict[str, object] = client.call(method, params)
        return result


def test_the_connection_cut_at_several_instants_leaves_a_repository_borg_checks(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str,
    tmp_path: Path,
) -> None:
    small_segments(configured_daemon, repository)
    slow_uploads(configured_daemon, 1024)
    relay = Relay(s3.port)
    consistent_states: list[list[str]] = [[]]
    cuts = 0
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        consistent_states.append(sorted(archive_names(configured_daemon, repository)))
        for round_number, delay in enumerate((0.3, 1.0, 2.0)):
            (sample_data / f"cut-{round_number}.bin").write_bytes(os.urandom((600 + 500 * round_number) * 1024))
            assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
            consistent_states.append(sorted(archive_names(configured_daemon, repository)))
            client.call("mirror", {})
            time.sleep(delay)
            assert configured_daemon.process is not None
            cuts += bool(rclone_children(configured_daemon.process.pid))
            relay.cut()
            wait_until_idle(configured_daemon)
            listed = bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download")
            assert listed in consistent_states, (listed, consistent_states)
            relay.resume()
        assert cuts >= 2
        assert client.call("mirror", {"wait": True})["state"] == "succeeded"
    assert bucket_state(s3, bucket, "testbox", configured_daemon, tmp_path / "download") == consistent_states[-1]
