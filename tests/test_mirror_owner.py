"""One writer per prefix: a box that restored from the bucket is refused until it takes the
prefix over, and the box that lost it then writes nothing there and says who has it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.faults.conftest import borg_env
from tests.s3 import S3Server
from tests.test_mirror import assert_bucket_is_the_repository, repository_files, wait_for_mirrors

WAIT = 120.0
OWNER = "testbox/.backupd-owner-"


def owners(s3: S3Server, bucket: str) -> list[str]:
    return [key for key in s3.objects(bucket, OWNER)]


def idle(daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + WAIT
    with daemon.client() as client:
        while client.call("status")["job"] is not None:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)


def snapshot(daemon: DaemonProcess, data: Path, name: str) -> None:
    (data / name).write_bytes(os.urandom(100_000))
    with daemon.client() as client:
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"


def borg_lists(daemon: DaemonProcess, s3: S3Server, bucket: str, into: Path) -> list[str]:
    into.mkdir()
    s3.download(bucket, "testbox", into)
    env = borg_env(daemon)
    checked = subprocess.run([sys.executable, "-m", "borg", "check", str(into)], env=env, capture_output=True,
                             text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr
    listed = subprocess.run([sys.executable, "-m", "borg", "list", "--short", str(into)], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    return sorted(listed.stdout.split())


def test_a_restored_box_is_refused_until_it_takes_over_and_the_old_box_then_writes_nothing(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, sample_data: Path,
    s3: S3Server, bucket: str, tmp_path: Path,
) -> None:
    with configured_daemon.client() as old:
        old.call("configure_mirror", s3.mirror_options(bucket))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
    assert len(owners(s3, bucket)) == 1
    old_owner = owners(s3, bucket)

    with new_box.client() as new:
        new.call("configure", {"passphrase": PASSPHRASE, "mirror": s3.mirror_options(bucket, prefix="testbox")})
        refused = new.call("mirror", {"wait": True})
        assert (refused["state"], refused["error"]["code"]) == ("failed", "mirror_taken_over"), refused
        assert "testbox copies its backups" in refused["error"]["message"]
        assert owners(s3, bucket) == old_owner
        with pytest.raises(RpcError) as not_taken:
            new.call("configure_mirror", s3.mirror_options(bucket, prefix="testbox"))
        assert (not_taken.value.code, not_taken.value.data.get("param")) == ("repository_exists", "prefix")
        assert "take_over" in not_taken.value.message
        assert new.call("configure_mirror", {**s3.mirror_options(bucket, prefix="testbox"), "take_over": True}) \
            == {"location": f"127.0.0.1:{s3.port}://{bucket}/testbox", "taken_over": False}
        taken = wait_for_mirrors(new_box, 2)
        assert taken["state"] == "succeeded", taken
        assert new.call("status")["mirror"]["state"] == "current"
    assert len(owners(s3, bucket)) == 1 and owners(s3, bucket) != old_owner

    new_repository = new_box.state_dir / "repository"
    new_data = tmp_path / "new-data"
    new_data.mkdir()
    with new_box.client() as new:
        new.call("change", {"sources": [str(new_data)]})
    for round_number in range(3):
        before = s3.objects(bucket, "testbox/")
        snapshot(configured_daemon, sample_data, f"old-{round_number}.bin")
        if round_number == 0:
            lost = wait_for_mirrors(configured_daemon, 2)
        else:  # it no longer mirrors by itself; a person's mirror still writes nothing
            time.sleep(2)
            with configured_daemon.client() as old:
                assert len([job for job in old.call("jobs", {"limit": 50}) if job["kind"] == "mirror"]) == round_number + 1
                lost = old.call("mirror", {"wait": True})
        assert (lost["state"], lost["error"]["code"]) == ("failed", "mirror_taken_over"), lost
        assert "newbox copies its backups since" in lost["error"]["message"]
        assert s3.objects(bucket, "testbox/") == before  # the old box wrote nothing
        snapshot(new_box, new_data, f"new-{round_number}.bin")
        with new_box.client() as new:
            assert new.call("mirror", {"wait": True})["state"] == "succeeded"
        on_the_bucket = {key.removeprefix("testbox/") for key in s3.objects(bucket, "testbox/")}
        assert on_the_bucket - set(repository_files(new_repository)) == {owners(s3, bucket)[0].removeprefix("testbox/")}

    with configured_daemon.client() as old:
        mirror = old.call("status")["mirror"]
        assert mirror["state"] == "taken_over"
        assert mirror["last_error"]["code"] == "mirror_taken_over"
    with new_box.client() as new:
        names = sorted(snapshot["name"] for snapshot in new.call("snapshots"))
    assert borg_lists(new_box, s3, bucket, tmp_path / "download") == names


def test_a_restored_box_behind_the_bucket_replaces_it_only_with_the_confirmed_count(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, sample_data: Path, s3: S3Server, bucket: str,
    tmp_path: Path,
) -> None:
    with configured_daemon.client() as old:
        old.call("configure_mirror", s3.mirror_options(bucket))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
    with new_box.client() as new:
        new.call("configure", {"passphrase": PASSPHRASE, "mirror": s3.mirror_options(bucket, prefix="testbox")})
    snapshot(configured_daemon, sample_data, "after-the-copy.bin")
    assert wait_for_mirrors(configured_daemon, 2)["state"] == "succeeded"  # the bucket is now ahead of the new box
    held = s3.objects(bucket, "testbox/")
    with new_box.client() as new:
        with pytest.raises(RpcError) as refused:
            new.call("configure_mirror", {**s3.mirror_options(bucket, prefix="testbox"), "take_over": True})
        assert (refused.value.code, refused.value.data) == ("invalid_params", {"param": "replace_object_count"})
        assert "a later state of this repository" in refused.value.message
        assert f"{len(held)} objects" in refused.value.message
        assert s3.objects(bucket, "testbox/") == held
        confirmed = {**s3.mirror_options(bucket, prefix="testbox"), "take_over": True,
                     "replace_object_count": len(held)}
        assert new.call("configure_mirror", confirmed)["taken_over"] is True
        mirrors_before = len([job for job in new.call("jobs", {"limit": 50}) if job["kind"] == "mirror"])
        assert wait_for_mirrors(new_box, mirrors_before + 1)["state"] == "succeeded"
        names = sorted(snapshot["name"] for snapshot in new.call("snapshots"))
    assert_bucket_is_the_repository(s3, bucket, "testbox", new_box.state_dir / "repository")
    assert borg_lists(new_box, s3, bucket, tmp_path / "download") == names
