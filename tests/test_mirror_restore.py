"""Restoring a new box from a bucket, end to end: a real backupd, real borg, rclone and a real S3
server (moto) on 127.0.0.1. A restore only reads the bucket; a download borg cannot open is
deleted; taking over a prefix that holds snapshots needs the caller to confirm what it deletes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.s3 import S3Server
from tests.test_mirror import (
    WAIT,
    assert_bucket_is_the_repository,
    rclone_children,
    repository_files,
    snapshot_of_new_data,
    wait_for_mirrors,
)

WRITES = ("PUT", "POST", "DELETE")


def writes_since(s3: S3Server, position: int) -> list[tuple[str, str, int]]:
    return [request for request in s3.requests()[position:] if request[0] in WRITES]


def mirrored_box(daemon: DaemonProcess, s3: S3Server, bucket: str, prefix: str = "testbox",
                 snapshots: int = 1) -> list[dict[str, Any]]:
    """The configured box with snapshots, mirrored into the prefix, then stopped: its snapshots."""
    with daemon.client() as client:
        for _ in range(snapshots):
            client.call("snapshot", {"wait": True})
        client.call("configure_mirror", s3.mirror_options(bucket, prefix=prefix))
        assert wait_for_mirrors(daemon, 1)["state"] == "succeeded"
        listed: list[dict[str, Any]] = client.call("snapshots")
    daemon.stop()
    return listed


def restore_params(s3: S3Server, bucket: str, prefix: str) -> dict[str, Any]:
    return {"passphrase": PASSPHRASE, "mirror": s3.mirror_options(bucket, prefix=prefix)}


def assert_nothing_restored(box: DaemonProcess) -> None:
    """No repository, no download, and the daemon still unconfigured."""
    assert not (box.state_dir / "repository").exists()
    assert not (box.state_dir / ".repository.download").exists()
    assert not list(box.state_dir.glob(".download-*"))
    with box.client() as client:
        assert client.call("status")["state"] == "unconfigured"
        assert client.call("config")["repository"] is None


def test_a_restore_from_an_empty_prefix_writes_nothing_and_names_the_prefix_that_holds_the_repository(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    snapshots = mirrored_box(configured_daemon, s3, bucket, snapshots=2)
    s3.client().put_object(Bucket=bucket, Key="notes/config", Body=b"not a borg repository\n")
    objects = s3.objects(bucket)
    with new_box.client() as client:
        config_before = client.call("config")
        requests_before = len(s3.requests())
        with pytest.raises(RpcError) as refused:
            client.call("configure", restore_params(s3, bucket, "wrong"))
        assert refused.value.code == "repository_not_found", refused.value
        assert refused.value.data["prefixes"] == ["testbox"]
        assert "testbox" in refused.value.message and f"{bucket}/wrong holds no borg repository" in refused.value.message
        assert writes_since(s3, requests_before) == []
        assert s3.objects(bucket) == objects
        assert client.call("config") == config_before
    assert_nothing_restored(new_box)

    with new_box.client() as client:
        requests_before = len(s3.requests())
        result = client.call("configure", restore_params(s3, bucket, "testbox"))
        assert result == {"created": False, "snapshot_count": 2}
        assert writes_since(s3, requests_before) == []
        assert client.call("snapshots") == snapshots
        first = wait_for_mirrors(new_box, 1)  # the prefix is still the old box's: nothing is written
        assert (first["state"], first["error"]["code"]) == ("failed", "mirror_taken_over"), first
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)
    assert s3.objects(bucket) == objects


def test_a_mirror_and_a_new_repository_are_set_up_in_one_call_only_with_create(
    new_box: DaemonProcess, s3: S3Server, bucket: str
) -> None:
    with new_box.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure", restore_params(s3, bucket, "fresh"))
        assert (refused.value.code, refused.value.data["prefixes"]) == ("repository_not_found", [])
        assert "create: true" in refused.value.message
        assert s3.objects(bucket) == {}
    assert_nothing_restored(new_box)
    with new_box.client() as client:
        result = client.call("configure", {**restore_params(s3, bucket, "fresh"), "create": True})
        assert result == {"created": True, "snapshot_count": 0}
        assert wait_for_mirrors(new_box, 1)["state"] == "succeeded"
    assert any(method == "PUT" and path.startswith(f"/{bucket}/fresh/.backupd-write-check")
               for method, path, _ in s3.requests())
    assert_bucket_is_the_repository(s3, bucket, "fresh", new_box.state_dir / "repository")


def damaged(data: bytes) -> bytes:
    """The same length, every byte past borg's 8-byte header changed."""
    return data[:8] + bytes(byte ^ 0x5A for byte in data[8:])


def test_a_download_borg_cannot_open_is_deleted_and_the_next_try_after_the_bucket_is_mended_works(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    snapshots = mirrored_box(configured_daemon, s3, bucket)
    good = s3.objects(bucket, "testbox/")
    client_s3 = s3.client()
    client_s3.delete_object(Bucket=bucket, Key="testbox/config")
    with new_box.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure", restore_params(s3, bucket, "testbox"))
        assert refused.value.code == "repository_not_found", refused.value
    assert_nothing_restored(new_box)

    client_s3.put_object(Bucket=bucket, Key="testbox/config", Body=good["testbox/config"])
    for key, data in good.items():
        if key.startswith(("testbox/data/", "testbox/index.")):
            client_s3.put_object(Bucket=bucket, Key=key, Body=damaged(data))
    with new_box.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure", restore_params(s3, bucket, "testbox"))
        assert refused.value.code == "repository_invalid", refused.value
        assert "cannot be used" in refused.value.message and "download was deleted" in refused.value.message
    assert_nothing_restored(new_box)

    for key, data in good.items():
        client_s3.put_object(Bucket=bucket, Key=key, Body=data)
    with new_box.client() as client:
        assert client.call("configure", restore_params(s3, bucket, "testbox")) == \
            {"created": False, "snapshot_count": 1}
        assert client.call("snapshots") == snapshots
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)
    assert not (new_box.state_dir / ".repository.download").exists()


def test_a_restore_takes_one_committed_state_and_leaves_out_locks_markers_and_newer_segments(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    mirrored_box(configured_daemon, s3, bucket)
    index = max(int(path.name.split(".")[1]) for path in repository.glob("index.*"))
    unfinished_segment = f"testbox/data/0/{index + 1}"  # uploaded before its index, as a mirror does
    strays = {unfinished_segment: b"half a transaction", "testbox/lock.roster": b"{}",
              "testbox/.backupd-write-check": b"", f"testbox/index.{index - 1}": b"an older index"}
    for key, data in strays.items():
        s3.client().put_object(Bucket=bucket, Key=key, Body=data)
    with new_box.client() as client:
        assert client.call("configure", restore_params(s3, bucket, "testbox"))["snapshot_count"] == 1
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)


def rclone_downloading_segments(daemon: DaemonProcess, timeout: float = WAIT) -> int:
    assert daemon.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in rclone_children(daemon.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"copy" in argv and b"--size-only" in argv:
                return pid
        time.sleep(0.002)
    raise AssertionError("no segment download ran")


def upload_like_a_mirror(s3: S3Server, repository: Path, bucket: str, prefix: str) -> None:
    """New segments, then the index with deletions: what another box's mirror does."""
    for args in (["copy", str(repository / "data"), f"test:{bucket}/{prefix}/data"],
                 ["sync", str(repository), f"test:{bucket}/{prefix}", "--exclude=/data/**"]):
        subprocess.run(["rclone", "--config=", *args], env=s3.rclone_environment(), check=True, timeout=120,
                       capture_output=True)


def test_a_repository_mirrored_into_during_the_download_is_restored_as_its_newer_state(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, sample_data: Path,
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    snapshot_of_new_data(configured_daemon, sample_data, size=30 * 1024 * 1024)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        client.call("mirror_off")
        (sample_data / "later.txt").write_bytes(os.urandom(50_000))
        client.call("snapshot", {"wait": True})
        snapshots = client.call("snapshots")
    configured_daemon.stop()
    answers: list[Any] = []

    def restore() -> None:
        try:
            with new_box.client(timeout=WAIT * 2) as client:
                answers.append(client.call("configure", restore_params(s3, bucket, "testbox")))
        except Exception as error:
            answers.append(error)

    caller = threading.Thread(target=restore)
    caller.start()
    downloading = rclone_downloading_segments(new_box)
    os.kill(downloading, signal.SIGSTOP)
    try:
        upload_like_a_mirror(s3, repository, bucket, "testbox")
    finally:
        os.kill(downloading, signal.SIGCONT)
    caller.join(timeout=WAIT * 2)
    assert answers == [{"created": False, "snapshot_count": 2}], new_box.log()
    assert "changed during the download" in new_box.log()
    with new_box.client() as client:
        assert client.call("snapshots") == snapshots
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)


def test_take_over_of_a_prefix_whose_repository_holds_snapshots_needs_its_object_count(
    configured_daemon: DaemonProcess, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    with configured_daemon.client() as client:
        client.call("snapshot", {"wait": True})
        client.call("configure_mirror", s3.mirror_options(bucket, prefix="shared"))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
        other = tmp_path / "other-repo"
        base = {"repository": str(other), "passphrase": PASSPHRASE, "sources": [str(tmp_path / "data")]}
        client.call("configure", base)
        held = s3.objects(bucket)
        count = len(held)
        options = s3.mirror_options(bucket, prefix="shared")

        with pytest.raises(RpcError) as refused:
            client.call("configure", {**base, "mirror": options})
        assert (refused.value.code, refused.value.data.get("param")) == ("repository_exists", "prefix")
        assert "DELETE" in refused.value.message and "choose another prefix" in refused.value.message
        for confirmation in ({}, {"replace_object_count": count - 1}):
            with pytest.raises(RpcError) as refused:
                client.call("configure", {**base, "mirror": {**options, "take_over": True, **confirmation}})
            assert (refused.value.code, refused.value.data) == \
                ("invalid_params", {"param": "mirror.replace_object_count"}), refused.value
            assert f"{count} objects" in refused.value.message and "DELETES" in refused.value.message
        with pytest.raises(RpcError) as refused:
            client.call("configure_mirror", {**options, "take_over": True})
        assert refused.value.data == {"param": "replace_object_count"}
        assert s3.objects(bucket) == held
        assert client.call("status")["mirror"] is None

        confirmed = {**options, "take_over": True, "replace_object_count": count}
        assert client.call("configure", {**base, "mirror": confirmed})["created"] is False
        assert wait_for_mirrors(configured_daemon, 2)["state"] == "succeeded"
    assert_bucket_is_the_repository(s3, bucket, "shared", other)


def test_a_download_folder_left_by_another_repository_is_started_afresh(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    mirrored_box(configured_daemon, s3, bucket)
    staging = new_box.state_dir / ".repository.download"
    staging.mkdir(mode=0o700)
    for path in repository.rglob("*"):  # the same names and sizes, another repository's bytes
        if path.is_file() and not path.name.startswith("lock."):
            target = staging / path.relative_to(repository)
            target.parent.mkdir(parents=True, exist_ok=True)
            other = path.read_text().replace("id = ", "id = 0", 1) if path.name == "config" else None
            target.write_bytes(other.encode() if other is not None else damaged(path.read_bytes()))
    with new_box.client() as client:
        assert client.call("configure", restore_params(s3, bucket, "testbox"))["snapshot_count"] == 1
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)
