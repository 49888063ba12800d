"""The off-site mirror end to end: a real backupd, real borg, rclone and a real S3 server
(moto) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.s3 import Relay, S3Server, start_s3_server
from tests.users import NOBODY, copy_client_packages, run_as_user

_bucket_numbers = itertools.count()
WAIT = 60.0


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.new_bucket(f"edgebox-{os.getpid()}-{next(_bucket_numbers)}")


def repository_files(repository: Path) -> dict[str, bytes]:
    """The repository as the mirror should hold it: every file but borg's lock."""
    files = {}
    for path in repository.rglob("*"):
        relative = path.relative_to(repository).as_posix()
        if path.is_file() and not relative.startswith("lock."):
            files[relative] = path.read_bytes()
    return files


def mirror_jobs(client: Any) -> list[dict[str, Any]]:
    return [job for job in client.call("jobs", {"limit": 200}) if job["kind"] == "mirror"]


def wait_for_mirrors(daemon: DaemonProcess, count: int, timeout: float = WAIT) -> dict[str, Any]:
    """Wait until `count` mirror jobs have finished and no job runs; the newest mirror job."""
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while time.monotonic() < deadline:
            finished = [job for job in mirror_jobs(client) if job["state"] != "running"]
            if len(finished) >= count and client.call("status")["job"] is None:
                return finished[0]
            time.sleep(0.1)
    raise AssertionError(f"fewer than {count} mirror jobs finished within {timeout} s:\n{daemon.log()}")


def data_puts(s3: S3Server, bucket: str, after: int = 0) -> list[str]:
    return [path for method, path, _ in s3.requests()[after:] if method == "PUT" and f"/{bucket}/" in path
            and "/data/" in path]


def test_first_mirror_then_only_new_segments_are_uploaded(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str
) -> None:
    with configured_daemon.client() as client:
        result = client.call("configure_mirror", s3.mirror_options(bucket))
        assert result == {"location": f"127.0.0.1:{s3.port}://{bucket}/testbox", "taken_over": False}
        first = wait_for_mirrors(configured_daemon, 1)
        assert first["state"] == "succeeded", first
        assert s3.objects(bucket, "testbox/") == {f"testbox/{name}": data
                                                  for name, data in repository_files(repository).items()}
        segments_before = set((repository / "data").rglob("*"))
        requests_before = len(s3.requests())

        (sample_data / "new.txt").write_bytes(os.urandom(50_000))
        client.call("snapshot", {"wait": True})
        second = wait_for_mirrors(configured_daemon, 2)
        assert second["state"] == "succeeded", second
        new_segments = {path for path in (repository / "data").rglob("*") if path.is_file()} - segments_before
        uploaded = data_puts(s3, bucket, requests_before)
        assert sorted(uploaded) == sorted(f"/{bucket}/testbox/{path.relative_to(repository).as_posix()}"
                                          for path in new_segments)
        assert s3.objects(bucket, "testbox/") == {f"testbox/{name}": data
                                                  for name, data in repository_files(repository).items()}
        mirror = client.call("status")["mirror"]
        assert mirror["state"] == "current", mirror
        assert mirror["snapshots_not_off_site"] == 0
        assert mirror["bytes_waiting"] == 0
        assert mirror["last_error"] is None
        assert second["result"]["compared"] == "changed" and second["result"]["compared_files"] > 0
