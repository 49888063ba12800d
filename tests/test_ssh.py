"""Remote repositories over SSH, against a real OpenSSH server on 127.0.0.1."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from backupd.capabilities import Capability, mask
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.processes import capabilities_of, children_of, process_tree
from backupctl.protocol import RpcError
from tests.sshd import SshServer, free_port, sshd_available
from tests.calls import call_error, wait_for
from tests.tree import describe
from tests.users import NOBODY

pytestmark = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd")


@pytest.fixture
def ssh_server(tmp_path):
    server = SshServer(tmp_path / "sshd")
    server.prepare()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def remote_repository(tmp_path) -> Path:
    return tmp_path / "server-data" / "repo"


def authorize_daemon(daemon, server: SshServer, repository: Path, append_only: bool = False) -> dict:
    repository.parent.mkdir(parents=True, exist_ok=True)
    with daemon.client() as client:
        key = client.call("ssh_key")
    server.authorize(key["public_key"], repository, append_only=append_only)
    return key


def configure_remote(daemon, server, repository, sources, **extra) -> dict:
    with daemon.client() as client:
        return client.call("configure", {"repository": server.location(repository), "passphrase": PASSPHRASE,
                                         "sources": [str(source) for source in sources], **extra})


def host_fingerprint(server: SshServer) -> str:
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(server.host_key.with_suffix(".pub"))],
                            capture_output=True, text=True, check=True)
    return listed.stdout.split()[1]


def test_the_daemon_makes_its_own_key_and_an_authorized_keys_line(daemon):
    unfinished = daemon.state_dir / "ssh" / ".new-key.left-by-a-crash"
    unfinished.mkdir(mode=0o700, parents=True)
    (unfinished / "id_ed25519").write_text("half a key")
    with daemon.client() as client:
        first = client.call("ssh_key")
        again = client.call("ssh_key")
    assert first == again and first["public_key"].startswith("ssh-ed25519 ")
    assert first["authorized_keys"].startswith('command="borg serve --restrict-to-repository ')
    assert "--append-only" in first["authorized_keys"] and first["public_key"] in first["authorized_keys"]
    private = daemon.state_dir / "ssh" / "id_ed25519"
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text() not in str(first)
    assert sorted(os.listdir(daemon.state_dir / "ssh")) == ["id_ed25519", "id_ed25519.pub"]


def test_an_ssh_folder_another_user_owns_gets_no_key(daemon):
    folder = daemon.state_dir / "ssh"
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)
    with daemon.client() as client:
        error = call_error(client, "ssh_key")
    assert error.code == "state_unwritable"
    assert f"the folder {folder} belongs to nobody" in error.message
    assert os.listdir(folder) == []


def test_snapshot_list_and_restore_over_ssh(daemon, ssh_server, remote_repository, sample_data):
    authorize_daemon(daemon, ssh_server, remote_repository)
    assert configure_remote(daemon, ssh_server, remote_repository, [sample_data]) == {
        "created": True, "snapshot_count": 0}
    saved = describe(sample_data)
    with daemon.client() as client:
        status = client.call("status")
        job = client.call("snapshot", {"wait": True})
        assert job["state"] == "succeeded", job["error"]
        assert [s["name"] for s in client.call("snapshots")] == [job["result"]["snapshot"]["name"]]
        (sample_data / "folder0" / "file0.txt").write_bytes(b"changed")
        restored = client.call("restore", {"wait": True})
    assert status["host_key"] == host_fingerprint(ssh_server)
    assert status["repository"] == ssh_server.location(remote_repository)
    assert restored["state"] == "succeeded", restored["error"]
    assert describe(sample_data) == saved
    assert (remote_repository / "config").exists()


def upload_limited_daemon(tmp_path: Path, kib_per_second: int) -> DaemonProcess:
    """A daemon whose snapshots leave at a set rate, so a test can look at borg and ssh while they run."""
    settings = tmp_path / "limited.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "limited-borg"}"\nupload_limit = {kib_per_second}\n'
                        '[defaults]\nschedule = "manual"\n')
    return DaemonProcess(socket=tmp_path / "limited.sock", state_dir=tmp_path / "limited-state",
                         settings=settings, log_path=tmp_path / "limited.log")


def test_an_upload_limit_holds_a_snapshot_to_that_rate(tmp_path, ssh_server, remote_repository):
    daemon = upload_limited_daemon(tmp_path, 256)
    data = tmp_path / "upload"
    data.mkdir()
    (data / "random.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    daemon.start()
    try:
        authorize_daemon(daemon, ssh_server, remote_repository)
        configure_remote(daemon, ssh_server, remote_repository, [data])
        with daemon.client() as client:
            job = client.call("snapshot")
            borg = wait_for(lambda: [pid for pid in children_of(daemon.process.pid) if b"create" in
                                     Path(f"/proc/{pid}/cmdline").read_bytes()])
            argv = Path(f"/proc/{borg[0]}/cmdline").read_bytes().split(b"\0")
            client.set_timeout(120)
            finished = wait_for(lambda: client.call("job", {"id": job["id"]})["state"] != "running" and
                                client.call("job", {"id": job["id"]}), timeout=120)
    finally:
        daemon.stop()
    assert b"--upload-ratelimit=256" in argv
    assert finished["state"] == "succeeded", finished["error"]
    # 2 MiB of incompressible data cannot leave faster than 256 KiB/s allows.
    assert finished["finished"] - finished["started"] >= 6


def test_ssh_has_no_capabilities_and_borg_reads_a_private_folder_with_only_its_own(tmp_path, ssh_server,
                                                                                 remote_repository):
    daemon = upload_limited_daemon(tmp_path, 128)
    private = tmp_path / "upload" / "private"
    private.mkdir(parents=True)
    (private / "random.bin").write_bytes(os.urandom(640 * 1024))
    for path in (private / "random.bin", private):
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o700)
    daemon.start()
    try:
        authorize_daemon(daemon, ssh_server, remote_repository)
        configure_remote(daemon, ssh_server, remote_repository, [private.parent])
        with daemon.client() as client:
            job = client.call("snapshot")
            borg_pid, ssh_pid = wait_for(lambda: _borg_create_and_its_ssh(daemon.process.pid))
            borg, ssh = capabilities_of(borg_pid), capabilities_of(ssh_pid)
            client.set_timeout(120)
            finished = wait_for(lambda: client.call("job", {"id": job["id"]})["state"] != "running" and
                                client.call("job", {"id": job["id"]}), timeout=120)
    finally:
        daemon.stop()
    assert ssh["CapInh"] == ssh["CapPrm"] == ssh["CapEff"] == ssh["CapAmb"] == 0
    # borg cannot lower ssh's bounding set (that takes CAP_SETPCAP); with no_new_privs it grants nothing.
    assert ssh["CapBnd"] == borg["CapBnd"]
    assert borg["CapEff"] == borg["CapPrm"] == borg["CapBnd"] == mask({Capability.DAC_READ_SEARCH})
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["result"]["snapshot"]["files"] == 1


def _borg_create_and_its_ssh(daemon_pid: int) -> tuple[int, int] | None:
    borg = ssh = None
    for pid in process_tree(daemon_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == b"ssh":
            ssh = pid
        elif b"create" in argv:
            borg = pid
    return (borg, ssh) if borg and ssh else None


def test_a_key_the_server_does_not_know_is_auth_failed(daemon, ssh_server, remote_repository, sample_data, tmp_path):
    remote_repository.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    ssh_server.authorize((tmp_path / "other.pub").read_text(), remote_repository)
    with daemon.client() as client:
        error = call_error(client, "configure", {"repository": ssh_server.location(remote_repository),
                                                 "passphrase": PASSPHRASE, "sources": [str(sample_data)]})
    assert error.code == "auth_failed" and "ssh-key" in error.message


def test_an_unreachable_server_is_a_problem_and_the_next_run_succeeds(daemon, ssh_server, remote_repository,
                                                                         sample_data):
    authorize_daemon(daemon, ssh_server, remote_repository)
    configure_remote(daemon, ssh_server, remote_repository, [sample_data])
    ssh_server.stop()
    with daemon.client() as client:
        failed = client.call("snapshot", {"wait": True})
        assert failed["state"] == "failed" and failed["error"]["code"] == "repository_unreachable"
        assert client.call("status")["problem"]["code"] == "repository_unreachable"
        ssh_server.start()
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
        assert client.call("status")["problem"] is None


def test_a_link_dropped_mid_snapshot_leaves_a_consistent_repository(daemon, ssh_server, remote_repository,
                                                                    large_data):
    authorize_daemon(daemon, ssh_server, remote_repository)
    configure_remote(daemon, ssh_server, remote_repository, [large_data])
    with daemon.client() as client:
        job = client.call("snapshot")
        wait_for(lambda: (client.call("status")["job"] or {}).get("progress", {}).get("original_size"))
        ssh_server.kill_connections()
        client.set_timeout(120)
        failed = wait_for(lambda: client.call("jobs", {"limit": 1})[0]["state"] != "running" and
                          client.call("jobs", {"limit": 1})[0], timeout=90)
        assert failed["id"] == job["id"] and failed["state"] == "failed"
        assert failed["error"]["code"] in ("repository_unreachable", "borg_failed")
        again = client.call("snapshot", {"wait": True})
        assert again["state"] == "succeeded", again["error"]
        check = client.call("check", {"wait": True})
        assert check["state"] == "succeeded" and check["result"]["ok"] is True


def test_a_changed_host_key_is_refused_and_a_pinned_one_accepted(daemon, ssh_server, remote_repository,
                                                                  sample_data):
    authorize_daemon(daemon, ssh_server, remote_repository)
    configure_remote(daemon, ssh_server, remote_repository, [sample_data])
    ssh_server.stop()
    ssh_server.new_host_key()
    ssh_server.start()
    with daemon.client() as client:
        refused = client.call("snapshot", {"wait": True})
        assert refused["state"] == "failed" and refused["error"]["code"] == "host_key_changed", refused["error"]
        assert client.call("status")["problem"]["code"] == "host_key_changed"
        wrong = call_error(client, "configure", {"repository": ssh_server.location(remote_repository),
                                                 "passphrase": PASSPHRASE, "sources": [str(sample_data)],
                                                 "host_key": "SHA256:" + "A" * 43})
        assert wrong.code == "host_key_changed"
    result = configure_remote(daemon, ssh_server, remote_repository, [sample_data],
                              host_key=host_fingerprint(ssh_server))
    assert result["created"] is False
    with daemon.client() as client:
        assert client.call("status")["host_key"] == host_fingerprint(ssh_server)
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"


def test_an_append_only_server_keeps_snapshots_working(daemon, ssh_server, remote_repository, sample_data):
    authorize_daemon(daemon, ssh_server, remote_repository, append_only=True)
    configure_remote(daemon, ssh_server, remote_repository, [sample_data], keep={"hourly": 1}, schedule="0 0 1 1 *")
    with daemon.client() as client:
        for _ in range(2):
            assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
            time.sleep(1)
        status = client.call("status")
        assert client.call("config")["append_only"] is True
    assert status["snapshot_count"] == 2 and "append-only" in status["retention"]


def ssh_reason(daemon, location: str, sample_data) -> RpcError:
    with daemon.client() as client:
        return call_error(client, "configure", {"repository": location, "passphrase": PASSPHRASE,
                                                "sources": [str(sample_data)]})


def test_a_refused_port_is_named_with_ssh_own_words(daemon, sample_data, remote_repository):
    port = free_port()
    error = ssh_reason(daemon, f"ssh://root@127.0.0.1:{port}{remote_repository}", sample_data)
    assert error.code == "repository_unreachable" and error.data["reason"] == "port_refused"
    assert f"127.0.0.1 refuses connections on port {port}" in error.message
    assert any("Connection refused" in line for line in error.data["ssh"])


def test_an_unknown_host_is_named(daemon, sample_data):
    error = ssh_reason(daemon, "ssh://root@no-such-host.invalid/srv/repo", sample_data)
    assert error.code == "repository_unreachable" and error.data["reason"] == "unknown_host"
    assert "There is no host named no-such-host.invalid" in error.message


def test_a_refused_key_is_auth_failed_every_time(daemon, ssh_server, remote_repository, sample_data, tmp_path):
    remote_repository.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    ssh_server.authorize((tmp_path / "other.pub").read_text(), remote_repository)
    for _ in range(3):
        error = ssh_reason(daemon, ssh_server.location(remote_repository), sample_data)
        assert (error.code, error.data["reason"]) == ("auth_failed", "key_refused"), error
        assert any("Permission denied" in line for line in error.data["ssh"])


def test_a_changed_host_key_is_named_with_ssh_own_words(daemon, ssh_server, remote_repository, sample_data):
    authorize_daemon(daemon, ssh_server, remote_repository)
    configure_remote(daemon, ssh_server, remote_repository, [sample_data])
    ssh_server.stop()
    ssh_server.new_host_key()
    ssh_server.start()
    with daemon.client() as client:
        refused = client.call("snapshot", {"wait": True})
    assert refused["error"]["code"] == "host_key_changed" and refused["error"]["data"]["reason"] == "host_key_changed"
    assert any("Host key verification failed" in line for line in refused["error"]["data"]["ssh"])


def test_a_server_without_borg_is_named(daemon, ssh_server, remote_repository, sample_data):
    remote_repository.parent.mkdir(parents=True)
    with daemon.client() as client:
        key = client.call("ssh_key")
    ssh_server.authorized_keys.write_text(
        f'command="/nonexistent/borg serve",restrict {key["public_key"].strip()}\n')
    error = ssh_reason(daemon, ssh_server.location(remote_repository), sample_data)
    assert error.code == "repository_unreachable" and error.data["reason"] == "borg_missing", error
    assert "has no borg to run" in error.message
    assert any("/nonexistent/borg" in line for line in error.data["ssh"])
