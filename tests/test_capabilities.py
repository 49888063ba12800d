"""What borg and ssh keep of the daemon's capabilities, read from /proc/<pid>/status as a person would,
and that a snapshot and a restore still do all their work with only that."""

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import backupctl
import backupd
from backupd.borg import commands
from backupd.borg.commands import BorgCommand
from backupd.borg.runner import run_borg
from backupd.capabilities import mask
from backupd.ssh import WITHOUT_CAPABILITIES
from tests.conftest import PASSPHRASE
from tests.processes import capabilities_in, capabilities_of
from tests.tree import describe
from tests.users import NOBODY, copy_packages, user_switch

SHOW_STATUS = (sys.executable, "-c", "print(open('/proc/self/status').read())")
CAP_SETPCAP = 8
IS_ROOT = os.getuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the daemon runs as root; another uid holds no capabilities")


def own_capabilities() -> dict[str, int]:
    return capabilities_of("self")


@pytest.mark.parametrize("command", [
    commands.create("/srv/repo", "a", ["/srv/data"]),
    commands.create("ssh://backup@host/./repo", "a", ["/srv/data"]),
    commands.extract("/srv/repo", "a"),
    commands.list_archives("/srv/repo"),
    commands.check("ssh://backup@host/./repo"),
], ids=["create", "create-remote", "extract", "list", "check-remote"])
async def test_borg_keeps_exactly_the_capabilities_its_command_declares(command: BorgCommand) -> None:
    stand_in = BorgCommand(("status",), json_output=False, capabilities=command.capabilities)
    result = await run_borg(stand_in, borg=SHOW_STATUS)
    borg = capabilities_in(result.stdout)
    held = own_capabilities()
    declared = mask(command.capabilities)
    assert borg["CapEff"] == borg["CapPrm"] == declared & held["CapPrm"]
    assert borg["CapInh"] == borg["CapAmb"] == 0
    if held["CapEff"] >> CAP_SETPCAP & 1:
        assert borg["CapBnd"] == declared & held["CapBnd"]


LIMITED_DAEMON = """
import json, subprocess, sys
from backupd.borg.commands import RESTORING
from backupd.capabilities import keep_only
child = subprocess.run(["cat", "/proc/self/status"], preexec_fn=keep_only(RESTORING),
                       capture_output=True, text=True, check=True)
print(json.dumps({"daemon": open("/proc/self/status").read(), "borg": child.stdout}))
"""


@needs_root
@pytest.mark.parametrize("run_as", [
    ["setpriv", "--bounding-set=-setpcap,-mknod"],
    user_switch(NOBODY),
], ids=["root-without-setpcap-and-mknod", "nobody"])
def test_a_daemon_lacking_capabilities_still_starts_borg_with_no_more_than_declared(run_as) -> None:
    packages = copy_packages(backupd, backupctl, msgpack)
    try:
        shown = subprocess.run([*run_as, sys.executable, "-c", LIMITED_DAEMON], capture_output=True, text=True,
                               cwd="/", env={**os.environ, "PYTHONPATH": str(packages)})
    finally:
        shutil.rmtree(packages)
    assert shown.returncode == 0, shown.stderr
    statuses = json.loads(shown.stdout)
    daemon, borg = capabilities_in(statuses["daemon"]), capabilities_in(statuses["borg"])
    assert borg["CapEff"] == borg["CapPrm"] == mask(commands.RESTORING) & daemon["CapPrm"]
    assert borg["CapInh"] == borg["CapAmb"] == 0
    assert borg["CapBnd"] == daemon["CapBnd"]  # dropping from it needs CAP_SETPCAP: it is left alone


def test_the_ssh_wrapper_leaves_its_program_no_capabilities() -> None:
    shown = subprocess.run([*WITHOUT_CAPABILITIES, "cat", "/proc/self/status"],
                           capture_output=True, text=True, check=True)
    ssh = capabilities_in(shown.stdout)
    assert ssh["CapEff"] == ssh["CapPrm"] == ssh["CapInh"] == ssh["CapAmb"] == 0
    if IS_ROOT:
        assert ssh["CapBnd"] == 0


def snapshot_and_restore(daemon, repository: Path, data: Path, damage) -> dict:
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(data)]})
        job = client.call("snapshot", {"wait": True})
        assert job["state"] == "succeeded", job["error"]
        damage()
        restored = client.call("restore", {"wait": True})
    assert restored["state"] == "succeeded", restored["error"]
    return job


@needs_root
def test_a_snapshot_reads_what_only_another_user_may_and_a_restore_puts_back_owners_modes_and_devices(
        daemon, repository, tmp_path) -> None:
    data = tmp_path / "box" / "data"
    private = data / "private"
    private.mkdir(parents=True)
    (private / "diary.txt").write_text("only nobody reads this\n")
    os.chmod(private / "diary.txt", 0o600)
    os.chown(private / "diary.txt", NOBODY, NOBODY)
    os.chmod(private, 0o700)
    os.chown(private, NOBODY, NOBODY)
    tool = data / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chown(tool, NOBODY, NOBODY)
    os.chmod(tool, 0o6755)
    pinger = data / "pinger"
    pinger.write_bytes(b"\x7fELF")
    # security.capability v2: cap_net_raw in the permitted set, effective.
    os.setxattr(pinger, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))
    try:
        os.mknod(data / "null", 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this sandbox does not allow device nodes")
    os.chown(data / "null", NOBODY, 5)
    saved = describe(data)

    def damage() -> None:
        (private / "diary.txt").unlink()
        os.chown(tool, 0, 0)
        os.chmod(tool, 0o644)
        os.removexattr(pinger, "security.capability")
        (data / "null").unlink()

    snapshot_and_restore(daemon, repository, data, damage)
    assert describe(data) == saved
    assert (private / "diary.txt").read_text() == "only nobody reads this\n"
    assert os.lstat(data / "null").st_rdev == os.makedev(1, 3)


@needs_root
def test_a_repository_in_a_folder_another_user_owns(daemon, tmp_path, sample_data) -> None:
    disk = tmp_path / "usb-disk"
    disk.mkdir()
    os.chown(disk, NOBODY, NOBODY)
    os.chmod(disk, 0o755)
    saved = describe(sample_data)
    job = snapshot_and_restore(daemon, disk / "backups", sample_data,
                               lambda: (sample_data / "folder0" / "file0.txt").write_bytes(b"changed"))
    assert job["result"]["snapshot"]["files"] > 0
    assert describe(sample_data) == saved
