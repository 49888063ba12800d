"""Restores into folders another user can write, while that user races the daemon.

The attacker is a real process running as another uid. It owns the folder that holds the
restore's target and, the whole time, swaps every entry the daemon makes there (and the target
itself) with folders of its own whose path to the target ends in a symbolic link to a root-only
folder (renameat2 RENAME_EXCHANGE). Whatever it manages, the root-only folder stays untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.restore.errors import RestoreError
from backupd.restore.journal import unfinished_journals
from backupd.restore.transaction import RestoreTransaction
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.calls import wait_for
from tests.users import NOBODY, user_switch

ROUNDS = 4
FILES = 300

ATTACKER = r"""
import ctypes, os, random, signal, sys, time
RENAME_EXCHANGE = 2
libc = ctypes.CDLL(None, use_errno=True)
home, target_name, secret, *staged_chains = sys.argv[1:]
folder = os.open(home, os.O_RDONLY | os.O_DIRECTORY)

def decoy(name):
    # A folder of the attacker's where every path the daemon or borg may build below the
    # entry it replaces leads, through a symbolic link at its end, into the root-only folder.
    path = os.path.join(home, name)
    os.mkdir(path)
    for chain in staged_chains:
        parts = chain.split("/")
        os.makedirs(os.path.join(path, *parts[:-1]), exist_ok=True)
        os.symlink(secret, os.path.join(path, *parts))
    os.symlink(secret, os.path.join(path, target_name))
    return name

def exchange(a, b):
    return libc.renameat2(folder, a.encode(), folder, b.encode(), RENAME_EXCHANGE) == 0

stopping = False

def stop(*_):
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, stop)
os.symlink(secret, os.path.join(home, "evil-link"))
decoys = {}
swaps = 0
print("ready", flush=True)
while not stopping:
    for name in os.listdir(folder):
        if name.startswith(".backupd-") and not name.endswith("-decoy"):
            replacement = decoys.get(name) or decoys.setdefault(name, decoy(name + "-decoy"))
        elif name == target_name:
            replacement = "evil-link"
        else:
            continue
        if exchange(name, replacement):
            swaps += 1
            time.sleep(random.random() * 0.002)
            exchange(name, replacement)
    time.sleep(random.random() * 0.0005)
print(swaps, flush=True)
"""


@pytest.fixture
def shared_box() -> Iterator[Path]:
    """A folder other users can reach (pytest's own temporary folders are root's, 0700)."""
    box = Path(tempfile.mkdtemp(prefix="backupd-race-", dir="/var/tmp"))
    os.chmod(box, 0o755)
    try:
        yield box
    finally:
        subprocess.run(["umount", "--lazy", "--recursive", str(box / "mounted")],
                       capture_output=True)
        shutil.rmtree(box)


@pytest.fixture
def layout(shared_box: Path) -> dict[str, Path]:
    """/home/u owned by the attacker, a target in it, and a root-only folder beside them."""
    home = shared_box / "home" / "u"
    home.mkdir(parents=True)
    os.chown(home, NOBODY, NOBODY)
    target = home / "etc"
    target.mkdir()
    for index in range(FILES):
        (target / f"file{index:03d}").write_text(f"restored {index}\n")
    (target / "keep").write_text("from the snapshot\n")
    secret = shared_box / "secret"
    secret.mkdir(mode=0o700)
    (secret / "keep").write_text("root only\n")
    os.chmod(secret / "keep", 0o600)
    return {"box": shared_box, "home": home, "target": target, "secret": secret}


def fingerprint(folder: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under folder with its kind, mode, owner and content: what must not change."""
    entries: dict[str, tuple[object, ...]] = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = os.lstat(path)
        content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
        entries[str(path.relative_to(folder))] = (stat.filemode(info.st_mode), info.st_uid,
                                                  info.st_gid, info.st_mtime_ns, content)
    return entries


class Attacker:
    """Swaps, as another uid, what the daemon makes in home, and target_name there."""

    def __init__(self, home: Path, target_name: str, secret: Path, targets: list[Path]) -> None:
        chains = [str(target).lstrip("/") for target in targets]
        self.process = subprocess.Popen(
            [*user_switch(NOBODY), sys.executable, "-I", "-c", ATTACKER, str(home),
             target_name, str(secret), *chains],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "ready\n", self.process.stderr.read()

    def stop(self) -> int:
        """Stop after the current pair of exchanges; how many exchanges went through."""
        self.process.terminate()
        swaps, errors = self.process.communicate(timeout=10)
        assert "Traceback" not in errors, errors
        return int(swaps)


def restore(daemon: DaemonProcess, **params: object) -> dict:
    with daemon.client() as client:
        job = client.call("restore", {**params, "wait": True})
    wait_for(lambda: not unfinished_journals(daemon.state_dir))
    return job


def test_racing_the_staging_folders_never_writes_outside_the_target(
    daemon: DaemonProcess, repository: Path, layout: dict[str, Path]
) -> None:
    target, secret, home = layout["target"], layout["secret"], layout["home"]
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(target)]})
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    snapshot = fingerprint(target)
    secret_before = fingerprint(secret)

    attacker = Attacker(home, target.name, secret, [target])
    try:
        for _ in range(ROUNDS):
            with daemon.client() as client:
                job = client.call("restore", {"wait": True})
            assert fingerprint(secret) == secret_before, job
            assert job["state"] == "succeeded", job
            wait_for(lambda: not unfinished_journals(daemon.state_dir))
    finally:
        swaps = attacker.stop()

    assert swaps > 0, "the attacker found something to swap: the target itself at least"
    assert fingerprint(secret) == secret_before
    assert fingerprint(target) == snapshot
    assert not [name for name in os.listdir(home) if name.startswith(".backupd-") and
                not name.endswith("-decoy")]
    assert not list(layout["box"].rglob(".backupd-restore-*")) + list(layout["box"].rglob(".backupd-previous-*"))


def test_a_mount_point_another_user_owns_is_refused_before_anything_is_written(
    daemon: DaemonProcess, repository: Path, layout: dict[str, Path]
) -> None:
    """A mount point is restored by swapping its children through folders inside it; when
    another user can write there, no such folder is safe, so the restore is refused."""
    mounted, secret = layout["box"] / "mounted", layout["secret"]
    mounted.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mounted)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    os.chown(mounted, NOBODY, NOBODY)
    (mounted / "photo").write_text("from the snapshot\n")
    with daemon.client() as client:
        client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                                  "sources": [str(mounted)]})
        assert client.call("snapshot", {"wait": True})["state"] == "succeeded"
    (mounted / "photo").write_text("changed\n")
    before = fingerprint(mounted)["photo"], fingerprint(secret)

    attacker = Attacker(mounted, "photo", secret, [mounted / "photo"])
    try:
        job = restore(daemon)
    finally:
        attacker.stop()

    assert job["state"] == "failed"
    assert job["error"]["code"] == "invalid_params"
    assert "cannot restore safely" in job["error"]["message"]
    assert f"{mounted} belongs to uid {NOBODY}" in job["error"]["message"]
    assert (fingerprint(mounted)["photo"], fingerprint(secret)) == before
    assert not [name for name in os.listdir(mounted) if name.startswith(".backupd-")]


# --- where the restore stages, as data -------------------------------------------------------


def prepare(journal: Path, target: Path) -> RestoreTransaction:
    return RestoreTransaction.prepare(journal, "7", [str(target)])


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state / "restore.json"


def test_staging_stays_beside_a_target_only_root_can_change(layout: dict[str, Path], journal: Path) -> None:
    target = layout["box"] / "srv" / "app"
    target.mkdir(parents=True)
    transaction = prepare(journal, target)
    assert [group.cwd for group in transaction.extract_groups()] == [target.parent / ".backupd-restore-7"]
    transaction.abort()


@pytest.mark.parametrize("make_unsafe", ["owned by another user", "writable by everyone"])
def test_staging_moves_up_to_the_nearest_folder_only_root_can_change(
    layout: dict[str, Path], journal: Path, make_unsafe: str
) -> None:
    parent = layout["box"] / "shared" / "deeper"
    target = parent / "app"
    target.mkdir(parents=True)
    if make_unsafe == "owned by another user":
        os.chown(parent.parent, NOBODY, NOBODY)
    else:
        os.chmod(parent.parent, 0o777)
    transaction = prepare(journal, target)
    group, = transaction.extract_groups()
    assert group.cwd == layout["box"] / ".backupd-restore-7"
    with transaction.opened_staging_folder(group) as staging_fd:
        staged = Path(f"/proc/self/fd/{staging_fd}", group.archive_paths[0])
        staged.mkdir(parents=True)
        (staged / "marker").write_text("new")
    transaction.swap_into_place()
    transaction.clean_up()
    assert (target / "marker").read_text() == "new"
    assert not list(layout["box"].rglob(".backupd-*"))


def test_a_sticky_folder_like_tmp_is_safe_for_what_root_owns_in_it(layout: dict[str, Path], journal: Path) -> None:
    sticky = layout["box"] / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    target = sticky / "app"
    target.mkdir()
    transaction = prepare(journal, target)
    assert [group.cwd for group in transaction.extract_groups()] == [sticky / ".backupd-restore-7"]
    transaction.abort()


def test_a_staging_folder_swapped_for_another_is_not_used(layout: dict[str, Path], journal: Path) -> None:
    target = layout["box"] / "srv" / "app"
    target.mkdir(parents=True)
    transaction = prepare(journal, target)
    group, = transaction.extract_groups()
    os.rename(group.cwd, group.cwd.with_name("moved"))
    group.cwd.mkdir(mode=0o700)
    with pytest.raises(RestoreError, match="no longer the folder the restore made"):
        with transaction.opened_staging_folder(group):
            pass
    with pytest.raises(RestoreError, match="no longer the folder the restore made"):
        transaction.swap_into_place()
    assert group.cwd.exists(), "a folder the restore did not make is left alone"
