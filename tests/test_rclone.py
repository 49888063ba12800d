"""rclone's argv as data, its JSON log lines, and its failures as stable error codes."""

from __future__ import annotations

import pytest

from backupd.mirror import rclone
from backupd.mirror.errors import RcloneFailed, error_kind, mirror_error

REPOSITORY = "/srv/backups/repo"
REMOTE = "mirror:edgebox/kitchen"


def test_uploads_compare_by_hash_and_the_root_files_step_touches_only_borgs_names() -> None:
    listed = rclone.upload_listed(REPOSITORY, REMOTE, "/state/mirror-upload/parallel")
    assert listed.args[:3] == ("copy", REPOSITORY, REMOTE) and listed.uploads
    assert {"--files-from-raw=/state/mirror-upload/parallel", "--checksum"} <= set(listed.args)
    one = rclone.upload_one(REPOSITORY, REMOTE, "data/0/17")
    assert one.args[:3] == ("copyto", f"{REPOSITORY}/data/0/17", f"{REMOTE}/data/0/17") and one.uploads
    root = rclone.upload_root_files("/state/mirror-upload/root", REMOTE)
    assert root.args[:3] == ("sync", "/state/mirror-upload/root", REMOTE) and "--checksum" in root.args
    included = {arg.removeprefix("--include=") for arg in root.args if arg.startswith("--include=")}
    assert included == {"/config", "/nonce", "/README", "/transactions", "/index.*", "/hints.*", "/integrity.*"}
    assert not any(arg.startswith("--exclude") for arg in root.args)


def test_hashes_and_comparison_reports_are_read_leniently() -> None:
    hashes = "d41d8cd98f00b204e9800998ecf8427e  data/0/3\n                                  data/0/4\n"
    assert rclone.parse_hashes(hashes) == {"data/0/3": "d41d8cd98f00b204e9800998ecf8427e"}
    assert rclone.parse_comparison("= config\n* data/0/3\n- data/0/9\n! nonce\n+ stray\n") == ("data/0/3", "nonce")


def test_argv_has_no_configuration_file_json_logs_and_the_upload_limit_on_uploads_only() -> None:
    upload = rclone.argv(rclone.upload_one(REPOSITORY, REMOTE, "data/0/1"), upload_limit_kib=512)
    assert upload[0] == "rclone" and "--config=" in upload and "--use-json-log" in upload
    assert "--bwlimit=512k:off" in upload
    assert not any(arg.startswith("--bwlimit") for arg in rclone.argv(rclone.download_listed(REMOTE, "/x", "/x.list", by_checksum=False), 512))
    assert not any(arg.startswith("--bwlimit") for arg in rclone.argv(rclone.upload_one(REPOSITORY, REMOTE, "data/0/1")))


def test_the_environment_is_only_a_path_a_locale_certificate_authorities_and_the_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", "/nonexistent.pem")
    monkeypatch.setenv("RCLONE_CONFIG_MIRROR_ENDPOINT", "https://elsewhere.example")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/backupd/minio-ca.pem")
    environment = rclone.rclone_environment({"RCLONE_CONFIG_MIRROR_TYPE": "s3"})
    assert set(environment) == {"PATH", "LANG", "HOME", "SSL_CERT_FILE", "RCLONE_CONFIG_MIRROR_TYPE"}
    assert environment["SSL_CERT_FILE"] == "/etc/backupd/minio-ca.pem"


def test_log_lines_give_progress_and_errors() -> None:
    stats_line = ('{"level":"warning","msg":"Transferred...","stats":{"bytes":2215939,"totalBytes":9000003,'
                  '"transfers":1,"totalTransfers":4,"deletes":0,"eta":null,"speed":0}}')
    level, _, stats = rclone.parse_log_line(stats_line)
    assert stats is not None
    assert rclone.transfer_stats(stats) == rclone.TransferStats(2215939, 9000003, 1, 4, 0, None, 0.0)
    assert rclone.parse_log_line("2026/11/28 09:39:34 Failed to copy: boom") == ("error", "Failed to copy: boom", None)
    assert rclone.parse_log_line('{"level":"error","msg":"md5 differ","object":"data/0/4"}') == (
        "error", "data/0/4: md5 differ", None)


@pytest.mark.parametrize(("message", "exit_code", "code"), [
    ("error listing: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist", 1, "auth_failed"),
    ("SignatureDoesNotMatch: The request signature we calculated does not match", 1, "auth_failed"),
    ("AccessDenied: Access Denied\n\tstatus code: 403", 1, "auth_failed"),
    ("NoSuchBucket: The specified bucket does not exist", 1, "bucket_not_found"),
    ('Get "http://127.0.0.1:5999/b": dial tcp 127.0.0.1:5999: connect: connection refused', 1,
     "repository_unreachable"),
    ("dial tcp: lookup s3.nowhere.example: no such host", 1, "repository_unreachable"),
    ('Put "http://127.0.0.1:9/b/data/0/3": write tcp 127.0.0.1:5->127.0.0.1:9: write: broken pipe', 1,
     "repository_unreachable"),
    ('Put "http://127.0.0.1:9/b/data/0/3": EOF', 1, "repository_unreachable"),
    ("Failed to copy: can't copy - source file is being updated", 7, "mirror_failed"),
])
def test_failures_get_stable_codes(message: str, exit_code: int, code: str) -> None:
    assert error_kind(RcloneFailed(exit_code, [message])) == code


def test_a_missing_top_folder_of_the_bucket_means_the_bucket_is_missing() -> None:
    failure = RcloneFailed(3, ["error listing: directory not found"])
    assert mirror_error(failure, "s3://edgebox/kitchen", listing_bucket=True).code == "bucket_not_found"
    assert mirror_error(failure, "s3://edgebox/kitchen").code == "mirror_failed"
    killed = mirror_error(RcloneFailed(-9, []), "s3://edgebox/kitchen")
    assert (killed.code, killed.data) == ("mirror_failed", {"exit_code": -9})
    assert "signal 9" in killed.message
