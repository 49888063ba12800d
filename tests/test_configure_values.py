"""configure against a real daemon: values borg would refuse, the passphrase a new repository
needs, and what a short passphrase of an existing repository does to messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backupctl.client import Client
from backupctl.protocol import RpcError
from backupd.config import MIN_NEW_PASSPHRASE_LENGTH
from tests.conftest import PASSPHRASE

SHORT_PASSPHRASE = "p"


def call_error(client: Client, method: str, params: dict | None = None) -> RpcError:
    with pytest.raises(RpcError) as raised:
        client.call(method, params)
    return raised.value


def borg_init(repository: Path, passphrase: str, base_dir: Path) -> None:
    """A repository made by another borg client, with whatever passphrase it was given."""
    env = dict(os.environ, BORG_PASSPHRASE=passphrase, BORG_BASE_DIR=str(base_dir))
    subprocess.run([sys.executable, "-m", "borg", "init", "--encryption=repokey-blake2", str(repository)],
                   env=env, check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("compression", ["zstd,99", "lz4\n", "auto,$(id)"])
def test_configure_refuses_a_compression_borg_would_refuse_and_keeps_the_configuration(
    configured_daemon, repository, sample_data, compression
):
    with configured_daemon.client() as client:
        before = client.call("config")
        error = call_error(client, "configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                                 "sources": [str(sample_data)], "compression": compression})
        after = client.call("config")
        snapshot = client.call("snapshot", {"wait": True})
    assert error.code == "invalid_params" and error.data["param"] == "compression"
    assert repr(compression) in error.message
    assert after == before and after["compression"] == "lz4"
    assert snapshot["state"] == "succeeded"


def test_configure_refuses_an_exclude_pattern_borg_would_refuse(configured_daemon, repository, sample_data):
    with configured_daemon.client() as client:
        before = client.call("config")
        error = call_error(client, "configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                                 "sources": [str(sample_data)], "exclude": ["re:(unclosed"]})
        assert client.call("config") == before
    assert error.code == "invalid_params" and error.data["param"] == "exclude"


def test_a_new_repository_is_not_created_with_a_short_passphrase(daemon, repository, sample_data):
    short = "x" * (MIN_NEW_PASSPHRASE_LENGTH - 1)
    with daemon.client() as client:
        error = call_error(client, "configure", {"repository": str(repository), "passphrase": short,
                                                 "sources": [str(sample_data)]})
        status = client.call("status")
        [job] = client.call("jobs")
    assert error.code == "invalid_params" and error.data["param"] == "passphrase"
    assert f"at least {MIN_NEW_PASSPHRASE_LENGTH} characters" in error.message
    assert not repository.exists()
    assert status["state"] == "unconfigured"
    assert job["kind"] == "configure" and job["error"]["code"] == "invalid_params"


def test_an_existing_repository_with_a_short_passphrase_connects_and_messages_stay_whole(
    daemon, repository, sample_data, tmp_path
):
    borg_init(repository, SHORT_PASSPHRASE, tmp_path / "other-client")
    with daemon.client() as client:
        connected = client.call("configure", {"repository": str(repository), "passphrase": SHORT_PASSPHRASE,
                                              "sources": [str(sample_data)]})
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        repository.rename(tmp_path / "moved-away")
        failed = client.call("snapshot", {"wait": True})
        log = client.call("job", {"id": failed["id"]})["log"]
        problem = client.call("status")["problem"]
    assert connected == {"created": False, "snapshot_count": 0}
    assert failed["error"]["code"] == "repository_not_found"
    assert failed["error"]["message"] == f"No repository exists at {repository}."
    words = json.dumps([failed["error"], problem, [line["message"] for line in log]])
    assert "repository" in words and str(repository) in words
    assert "[redacted]" not in words
