"""The off-site mirror end to end: a real backupd, real borg, rclone and a real S3 server
(moto) on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.faults.conftest import raw_borg
from tests.processes import children_of
from tests.s3 import Relay, S3Server
from tests.users import NOBODY, call_as_user, copy_client_packages, folder_others_can_reach, run_as_user, user_switch

WAIT = 60.0


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
        assert_bucket_is_the_repository(s3, bucket, "testbox", repository)
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
        assert_bucket_is_the_repository(s3, bucket, "testbox", repository)
        mirror = client.call("status")["mirror"]
        assert mirror["state"] == "current", mirror
        assert mirror["snapshots_not_off_site"] == 0
        assert mirror["bytes_waiting"] == 0
        assert mirror["last_error"] is None
        assert second["result"]["compared"] == "changed" and second["result"]["compared_files"] > 0


@pytest.mark.parametrize("wrong", ["secret_access_key", "access_key_id"])
def test_wrong_keys_are_auth_failed_and_nothing_is_kept(
    configured_daemon: DaemonProcess, s3: S3Server, bucket: str, wrong: str
) -> None:
    options = {**s3.mirror_options(bucket), wrong: "AKIAWRONGWRONGWRONG0" if wrong == "access_key_id" else "wrong/secret"}
    with configured_daemon.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure_mirror", options)
        assert refused.value.code == "auth_failed", refused.value
        assert "wrong/secret" not in refused.value.message
        assert client.call("config")["mirror"] is None
        assert client.call("status")["mirror"] is None
    assert s3.objects(bucket) == {}


def test_missing_bucket_is_bucket_not_found_and_not_created(configured_daemon: DaemonProcess, s3: S3Server) -> None:
    with configured_daemon.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure_mirror", s3.mirror_options("no-such-bucket"))
    assert refused.value.code == "bucket_not_found", refused.value
    assert "no-such-bucket" not in [entry["Name"] for entry in s3.client().list_buckets()["Buckets"]]


def test_a_service_that_does_not_answer_is_unreachable(configured_daemon: DaemonProcess, s3: S3Server, bucket: str) -> None:
    relay = Relay(s3.port)
    relay.cut()
    with configured_daemon.client() as client:
        with pytest.raises(RpcError) as refused:
            client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
    assert refused.value.code == "repository_unreachable", refused.value


def test_bad_options_are_invalid_params(configured_daemon: DaemonProcess, s3: S3Server, bucket: str) -> None:
    cases = {"provider": "ftp://example.com", "bucket": "Not_A_Bucket", "prefix": "../up", "region": "EU West"}
    with configured_daemon.client() as client:
        for param, value in cases.items():
            with pytest.raises(RpcError) as refused:
                client.call("configure_mirror", {**s3.mirror_options(bucket), param: value})
            assert (refused.value.code, refused.value.data.get("param")) == ("invalid_params", param)
        nested = {"mirror": {**s3.mirror_options(bucket), "provider": 5}, "passphrase": PASSPHRASE}
        with pytest.raises(RpcError) as refused:
            client.call("configure", nested)
        assert refused.value.data == {"param": "mirror.provider"}
        with pytest.raises(RpcError) as refused:
            client.call("configure", {"passphrase": PASSPHRASE, "repository": "backup@server.example:repo",
                                      "mirror": s3.mirror_options(bucket)})
        assert refused.value.data == {"param": "repository"}
        with pytest.raises(RpcError) as refused:
            client.call("configure", {"passphrase": PASSPHRASE})
        assert refused.value.data == {"param": "repository"}
        assert client.call("config")["mirror"] is None


def rclone_children(daemon_pid: int) -> list[int]:
    found = []
    for pid in children_of(daemon_pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"rclone":
                found.append(pid)
        except OSError:
            continue
    return found


def wait_for_rclone(daemon: DaemonProcess, timeout: float = WAIT) -> int:
    assert daemon.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = rclone_children(daemon.process.pid)
        if children:
            return children[0]
        time.sleep(0.02)
    raise AssertionError("no rclone ran")


def slow_uploads(daemon: DaemonProcess, kib_per_second: int) -> None:
    daemon.settings.write_text(f"upload_limit = {kib_per_second}\n" + daemon.settings.read_text())
    daemon.restart()


READ_AS_OTHER_USER = """
import sys
for name in ("cmdline", "environ"):
    try:
        with open(f"/proc/{sys.argv[1]}/{name}", "rb") as file:
            sys.stdout.write(name + " readable " + repr(file.read()) + "\\n")
    except OSError as error:
        sys.stdout.write(name + " refused " + type(error).__name__ + "\\n")
"""


def test_the_secret_is_in_no_argv_environment_others_read_record_or_log(
    configured_daemon: DaemonProcess, s3: S3Server, bucket: str, sample_data: Path, tmp_path: Path
) -> None:
    secret = s3.secret_access_key
    slow_uploads(configured_daemon, 1024)
    snapshot_of_new_data(configured_daemon, sample_data)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_step(configured_daemon, "uploading new segments")
        rclone_pid = wait_for_rclone(configured_daemon)
        assert secret.encode() not in Path(f"/proc/{rclone_pid}/cmdline").read_bytes()
        seen = subprocess.run([*user_switch(NOBODY), sys.executable, "-I", "-c", READ_AS_OTHER_USER, str(rclone_pid)],
                              capture_output=True, text=True, cwd="/", timeout=30).stdout
        assert "cmdline readable" in seen and secret not in seen
        assert "environ refused PermissionError" in seen, seen
        running = client.call("status")["job"]
        assert running["kind"] == "mirror"
        client.call("cancel", {"job": running["id"]})
        wait_for_mirrors(configured_daemon, 1)
        shown = [client.call("config"), client.call("status"), client.call("jobs", {"limit": 200}),
                 *(client.call("job", {"id": job["id"]}) for job in client.call("jobs", {"limit": 200}))]
        assert client.call("config")["mirror"]["secret_set"] is True
    assert secret not in repr(shown)
    assert secret not in configured_daemon.log()
    holding = [path for path in configured_daemon.state_dir.rglob("*")
               if path.is_file() and secret.encode() in path.read_bytes()]
    assert [path.name for path in holding] == ["mirror.json"]
    assert holding[0].stat().st_mode & 0o777 == 0o600
    assert configured_daemon.state_dir.stat().st_mode & 0o777 == 0o700


def test_reset_erases_the_keys_and_leaves_the_bucket(configured_daemon: DaemonProcess, s3: S3Server, bucket: str) -> None:
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_mirrors(configured_daemon, 1)
        before = s3.objects(bucket)
        client.call("reset")
        assert client.call("config")["mirror"] is None
        assert client.call("status")["mirror"] is None
    assert s3.objects(bucket) == before and before
    assert not any(s3.secret_access_key.encode() in path.read_bytes()
                   for path in configured_daemon.state_dir.rglob("*") if path.is_file())


def test_a_prefix_another_repository_mirrors_into_is_refused_unless_taken_over(
    configured_daemon: DaemonProcess, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, prefix="shared"))
        wait_for_mirrors(configured_daemon, 1)
        client.call("configure", {"repository": str(tmp_path / "other-repo"), "passphrase": PASSPHRASE,
                                  "sources": [str(tmp_path / "data")]})
        assert client.call("status")["mirror"] is None  # another repository: its mirror is configured anew
        with pytest.raises(RpcError) as refused:
            client.call("configure_mirror", s3.mirror_options(bucket, prefix="shared"))
        assert (refused.value.code, refused.value.data.get("param")) == ("repository_exists", "prefix")
        assert client.call("configure_mirror", {**s3.mirror_options(bucket, prefix="shared"), "take_over": True}) \
            == {"location": f"127.0.0.1:{s3.port}://{bucket}/shared", "taken_over": True}
        job = wait_for_mirrors(configured_daemon, 2)
        assert job["state"] == "succeeded", job
    assert mirrored_objects(s3, bucket, "shared") == {f"shared/{name}": data
                                            for name, data in repository_files(tmp_path / "other-repo").items()}


def wait_for_step(daemon: DaemonProcess, step: str, timeout: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while time.monotonic() < deadline:
            job = client.call("status")["job"]
            if job is not None and job["kind"] == "mirror" and job["progress"].get("step") == step \
                    and (job["progress"].get("bytes") or 0) > 0:
                return job
            time.sleep(0.05)
    raise AssertionError(f"the mirror never reached {step!r}:\n{daemon.log()}")


def snapshot_of_new_data(daemon: DaemonProcess, sample_data: Path, size: int = 10 * 1024 * 1024) -> None:
    """Data the mirror takes some seconds to upload under the limit (rclone lets the first 4 MiB burst)."""
    (sample_data / "big.bin").write_bytes(os.urandom(size))
    with daemon.client() as client:
        client.call("snapshot", {"wait": True})


def mirrored_objects(s3: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    """The objects under the prefix but the one owner object there must be."""
    objects = s3.objects(bucket, f"{prefix}/")
    owners = [key for key in objects if key.startswith(f"{prefix}/.backupd-owner-")]
    assert len(owners) == 1, owners
    return {key: data for key, data in objects.items() if key not in owners}


def assert_bucket_is_the_repository(s3: S3Server, bucket: str, prefix: str, repository: Path) -> None:
    assert mirrored_objects(s3, bucket, prefix) == {f"{prefix}/{name}": data
                                                    for name, data in repository_files(repository).items()}


def test_rclone_killed_mid_mirror_fails_typed_and_the_next_mirror_completes(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str
) -> None:
    slow_uploads(configured_daemon, 1024)
    snapshot_of_new_data(configured_daemon, sample_data)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_step(configured_daemon, "uploading new segments")
        os.kill(wait_for_rclone(configured_daemon), signal.SIGKILL)
        failed = wait_for_mirrors(configured_daemon, 1)
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == "mirror_failed"
        assert "signal 9" in failed["error"]["message"]
        logged = [line["message"] for line in client.call("job", {"id": failed["id"]})["log"]]
        assert "running rclone copy" in logged
        status = client.call("status")
        assert status["mirror"]["state"] == "failed"
        assert status["problem"]["code"] == "mirror_failed"
        again = client.call("mirror", {"wait": True})
        assert again["state"] == "succeeded", again
        status = client.call("status")
        assert status["mirror"]["state"] == "current" and status["problem"] is None
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def test_the_server_going_away_mid_mirror_is_unreachable_and_the_next_mirror_completes(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str
) -> None:
    relay = Relay(s3.port)
    slow_uploads(configured_daemon, 1024)
    snapshot_of_new_data(configured_daemon, sample_data)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
        wait_for_step(configured_daemon, "uploading new segments")
        relay.cut()
        failed = wait_for_mirrors(configured_daemon, 1)
        assert (failed["state"], failed["error"]["code"]) == ("failed", "repository_unreachable"), failed
        relay.resume()
        again = client.call("mirror", {"wait": True})
        assert again["state"] == "succeeded", again
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def test_a_new_box_restores_from_the_bucket_and_mirrors_on_into_it(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, sample_data: Path,
    s3: S3Server, bucket: str
) -> None:
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        client.call("snapshot", {"wait": True})
        wait_for_mirrors(configured_daemon, 1)
        job = client.call("mirror", {"wait": True})
        assert job["state"] == "succeeded"
        snapshots = client.call("snapshots")
    configured_daemon.stop()
    original = {path.relative_to(sample_data): path.read_bytes() for path in sample_data.rglob("*") if path.is_file()}
    # A download that was stopped: one segment cut short, the rest missing.
    staging = new_box.state_dir / ".repository.download"
    segment = next(path for path in sorted((repository / "data").rglob("*")) if path.is_file())
    cut_short = staging / segment.relative_to(repository)
    cut_short.parent.mkdir(parents=True)
    staging.chmod(0o700)  # as the daemon makes it
    cut_short.write_bytes(segment.read_bytes()[:100])

    with new_box.client() as client:
        result = client.call("configure", {"passphrase": PASSPHRASE, "mirror": s3.mirror_options(bucket, prefix="testbox")})
        assert result == {"created": False, "snapshot_count": len(snapshots)}  # no sources: nothing to warn about
        assert client.call("snapshots") == snapshots
        downloaded = new_box.state_dir / "repository"
        assert repository_files(downloaded) == repository_files(repository)
        assert not staging.exists()
        for path in sample_data.iterdir():
            if path.is_dir() and not path.is_symlink():
                for child in path.iterdir():
                    child.unlink()
        restored = client.call("restore", {"wait": True})
        assert restored["state"] == "succeeded", restored
        assert {path.relative_to(sample_data): path.read_bytes()
                for path in sample_data.rglob("*") if path.is_file()} == original
        refused = client.call("mirror", {"wait": True})
        assert refused["error"]["code"] == "mirror_taken_over", refused  # the old box's prefix, until taken over
        client.call("configure_mirror", {**s3.mirror_options(bucket, prefix="testbox"), "take_over": True})
        job = wait_for_mirrors(new_box, 2)
        assert job["state"] == "succeeded", job
        assert client.call("status")["mirror"]["location"].endswith(f"{bucket}/testbox")
    assert_bucket_is_the_repository(s3, bucket, "testbox", downloaded)


def backupctl(daemon: DaemonProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BACKUPD_", "BACKUPCTL_"))}
    return subprocess.run([sys.executable, "-m", "backupctl.cli", "--socket", str(daemon.socket), *args],
                          input=stdin or "", capture_output=True, text=True, timeout=120, env=env)


def test_backupctl_sets_up_runs_shows_and_turns_off_the_mirror(
    configured_daemon: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    secret = s3.secret_access_key
    set_up = backupctl(configured_daemon, "mirror", "set", s3.endpoint, bucket, "--key-id", s3.access_key_id,
                       "--secret-file", "-", stdin=secret + "\n")
    assert set_up.returncode == 0, set_up.stderr
    assert f"{bucket}/testbox" in set_up.stdout
    wait_for_mirrors(configured_daemon, 1)
    now = backupctl(configured_daemon, "mirror", "now", "--compare-all")
    assert now.returncode == 0, now.stderr
    assert "every file compared with the bucket" in now.stdout + now.stderr
    shown = backupctl(configured_daemon, "mirror")
    assert shown.returncode == 0 and "(current)" in shown.stdout, shown.stdout
    status = backupctl(configured_daemon, "status").stdout
    assert f"Off-site:      127.0.0.1:{s3.port}://{bucket}/testbox, current, copied" in status, status
    assert "On this disk:" in status
    wrong = backupctl(configured_daemon, "mirror", "set", s3.endpoint, "missing-bucket", "--key-id",
                      s3.access_key_id, "--secret-file", "-", stdin=secret + "\n")
    assert wrong.returncode == 1 and "bucket_not_found" in wrong.stderr
    off = backupctl(configured_daemon, "mirror", "off", "--yes")
    assert off.returncode == 0, off.stderr
    assert "No off-site mirror" in backupctl(configured_daemon, "mirror").stdout
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def test_a_changed_object_in_the_bucket_is_found_by_the_full_comparison_and_replaced(
    configured_daemon: DaemonProcess, repository: Path, s3: S3Server, bucket: str
) -> None:
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_mirrors(configured_daemon, 1)
        segment = max((path for path in (repository / "data").rglob("*") if path.is_file()),
                      key=lambda path: path.stat().st_size)
        relative = segment.relative_to(repository).as_posix()
        damaged = bytearray(segment.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        s3.client().put_object(Bucket=bucket, Key=f"testbox/{relative}", Body=bytes(damaged))
        full = client.call("mirror", {"wait": True, "compare_all": True})
        assert full["state"] == "succeeded", full
        assert full["result"]["repaired_files"] == 1
        logged = [line["message"] for line in client.call("job", {"id": full["id"]})["log"]]
        assert any(f"1 differ or are missing there, the first: {relative}" in line for line in logged), logged
        assert client.call("status")["mirror"]["state"] == "current"
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)


def test_readers_see_the_mirror_without_the_key_id_or_rclone_words(
    configured_daemon: DaemonProcess, s3: S3Server, bucket: str
) -> None:
    relay = Relay(s3.port)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket, endpoint=relay.endpoint))
        wait_for_mirrors(configured_daemon, 1)
        relay.cut()
        failed = client.call("mirror", {"wait": True})
        assert failed["error"]["code"] == "repository_unreachable"
    configured_daemon.stop()
    with folder_others_can_reach() as folder:
        configured_daemon.socket = folder / "backupd.sock"
        configured_daemon.settings.write_text('socket_mode = "0666"\n' + configured_daemon.settings.read_text())
        configured_daemon.start()
        packages = copy_client_packages()
        config = call_as_user(packages, NOBODY, configured_daemon.socket, "config")["result"]
        status = call_as_user(packages, NOBODY, configured_daemon.socket, "status")["result"]
        configured_daemon.stop()
    assert config["mirror"]["access_key_id"] is None and config["mirror"]["bucket"] == bucket
    assert status["mirror"]["last_error"]["message"] == "The off-site storage service could not be reached"
    assert status["problem"]["message"] == "The off-site storage service could not be reached"
    assert str(relay.port) not in repr(status["mirror"]["last_error"])
    assert s3.access_key_id not in repr(status) + repr(config)


def test_configure_warns_when_the_sources_will_not_fit_beside_the_repository_and_shows_its_size(
    daemon: DaemonProcess, repository: Path, sample_data: Path
) -> None:
    with daemon.client() as client:
        fits = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                         "sources": [str(sample_data)]})
        assert "warnings" not in fits
        free = os.statvfs(repository).f_bfree * os.statvfs(repository).f_frsize
        with open(sample_data / "disk.img", "wb") as image:  # sparse: its size is what borg would read
            image.truncate(free + 2**30)
        warned = client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                           "sources": [str(sample_data)]})
        assert len(warned["warnings"]) == 1
        assert "the first snapshot may not fit" in warned["warnings"][0]
        deadline = time.monotonic() + WAIT
        while client.call("status")["local_size"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.call("status")["local_size"] == sum(len(data) for data in repository_files(repository).values())


def test_a_download_the_daemon_died_in_continues_at_the_next_configure(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, repository: Path, sample_data: Path,
    s3: S3Server, bucket: str
) -> None:
    snapshot_of_new_data(configured_daemon, sample_data, size=60 * 1024 * 1024)
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        assert wait_for_mirrors(configured_daemon, 1)["state"] == "succeeded"
    configured_daemon.stop()
    params = {"passphrase": PASSPHRASE, "mirror": s3.mirror_options(bucket, prefix="testbox")}
    staging = new_box.state_dir / ".repository.download"
    first_try: list[Any] = []

    def configure() -> None:
        try:
            with new_box.client() as client:
                first_try.append(client.call("configure", params))
        except Exception as error:  # the daemon is killed under it
            first_try.append(error)

    caller = threading.Thread(target=configure)
    caller.start()
    deadline = time.monotonic() + WAIT
    while not any(path.is_file() for path in staging.rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    new_box.stop(signal.SIGKILL)
    caller.join(timeout=WAIT)
    assert first_try and not isinstance(first_try[0], dict), "the download ended before the daemon was killed"
    assert not (new_box.state_dir / "repository").exists()
    assert staging.exists()

    new_box.start()
    with new_box.client() as client:
        assert client.call("configure", params)["created"] is False
        assert client.call("status")["snapshot_count"] == 1
    assert repository_files(new_box.state_dir / "repository") == repository_files(repository)
    assert not staging.exists()


def test_a_download_folder_another_user_made_in_advance_is_refused(
    configured_daemon: DaemonProcess, new_box: DaemonProcess, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    with configured_daemon.client() as client:
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_mirrors(configured_daemon, 1)
    with folder_others_can_reach() as shared_root:
        shared = shared_root / "shared"
        shared.mkdir()
        shared.chmod(0o1777)  # like /tmp: anyone may make entries
        root_only = shared_root / "root-only"
        root_only.mkdir(mode=0o700)
        run_as_user(NOBODY, "import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
                    str(root_only), str(shared / ".repo.download"))
        with new_box.client() as client:
            with pytest.raises(RpcError) as refused:
                client.call("configure", {"repository": str(shared / "repo"), "passphrase": PASSPHRASE,
                                          "mirror": s3.mirror_options(bucket, prefix="testbox")})
            assert (refused.value.code, refused.value.data.get("param")) == ("invalid_params", "repository")
            assert client.call("status")["state"] == "unconfigured"
        assert list(root_only.iterdir()) == []
        assert not (shared / "repo").exists()


def test_segments_compaction_removed_leave_the_bucket_after_the_new_index(
    configured_daemon: DaemonProcess, repository: Path, sample_data: Path, s3: S3Server, bucket: str
) -> None:
    with configured_daemon.client() as client:
        client.call("snapshot", {"wait": True})
        (sample_data / "short-lived.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        client.call("snapshot", {"wait": True})
        client.call("configure_mirror", s3.mirror_options(bucket))
        wait_for_mirrors(configured_daemon, 1)
        newest = client.call("snapshots")[0]["name"]
        raw_borg(configured_daemon, "delete", f"{repository}::{newest}")
        raw_borg(configured_daemon, "compact", str(repository))
        before = set(s3.objects(bucket, "testbox/data/"))
        job = client.call("mirror", {"wait": True})
        assert job["state"] == "succeeded", job
        assert job["result"]["deleted_files"] > 0
        assert client.call("status")["mirror"]["snapshots_not_off_site"] == 0
        assert newest not in [snapshot["name"] for snapshot in client.call("snapshots")]
    assert before - set(s3.objects(bucket, "testbox/data/"))
    assert_bucket_is_the_repository(s3, bucket, "testbox", repository)
