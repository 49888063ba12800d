"""configure refuses a source the daemon could not restore: one on a mount it sees read-only."""

import subprocess

import pytest

from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "settings").write_text("kept\n")
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("inside", ["app", "app/settings", "app/not-there-yet/deeper"])
def test_a_source_on_a_read_only_mount_is_refused(daemon, repository, read_only_folder, inside):
    source = read_only_folder / inside
    with daemon.client() as client, pytest.raises(RpcError) as refused:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(source)]})
    assert refused.value.code == "invalid_params" and refused.value.data["param"] == "sources"
    assert str(source) in refused.value.message and "read-only" in refused.value.message
    assert not repository.exists()


def test_a_read_only_mount_point_itself_is_refused(daemon, repository, read_only_folder):
    with daemon.client() as client, pytest.raises(RpcError) as refused:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(read_only_folder)]})
    assert refused.value.data["param"] == "sources"
