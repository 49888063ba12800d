"""Files the daemon writes, attacked for real by another user (nobody) who prepares the folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.private_files import UnsafeFolderError, remove_temporary_files, write_atomically
from tests.users import NOBODY, folder_others_can_reach, run_as_user

PLANT = """
import os, sys
folder, name, pid, victim = sys.argv[1:]
fd = os.open(os.path.join(folder, f".{name}.{pid}.tmp"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
os.fchmod(fd, 0o666)
os.close(fd)
os.symlink(victim, os.path.join(folder, name))
"""

LINK = """
import os, sys
os.symlink(sys.argv[1], sys.argv[2])
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    with folder_others_can_reach() as folder:
        yield folder


@pytest.fixture
def victim(shared: Path) -> Path:
    """A file only root can read or write, which nobody would like the daemon to overwrite."""
    private = shared / "root-only"
    private.mkdir(mode=0o700)
    file = private / "precious"
    file.write_text("precious\n")
    return file


@pytest.mark.parametrize(("owner", "group", "mode", "refusal"), [
    (NOBODY, 0, 0o755, "belongs to nobody"),
    (0, 0, 0o777, "can be written by other users"),
    (0, 0, 0o1777, "can be written by other users"),
    (0, NOBODY, 0o775, "can be written by other users"),
], ids=["owned by nobody", "world-writable", "sticky like /tmp", "writable by nobody's group"])
def test_a_folder_another_user_can_change_is_refused_whatever_they_planted(
    shared: Path, victim: Path, owner: int, group: int, mode: int, refusal: str
) -> None:
    folder = shared / "textfile"
    folder.mkdir()
    os.chown(folder, owner, group)
    folder.chmod(mode)
    run_as_user(NOBODY, PLANT, str(folder), "backupd.prom", str(os.getpid()), str(victim))

    with pytest.raises(UnsafeFolderError, match=refusal):
        write_atomically(folder / "backupd.prom", b"backupd_snapshots 3\n", 0o644)

    assert victim.read_text() == "precious\n"
    entries = list(folder.iterdir())
    assert len(entries) == 2 and all(entry.lstat().st_uid == NOBODY for entry in entries)
    assert (folder / f".backupd.prom.{os.getpid()}.tmp").read_bytes() == b""


def test_a_way_another_user_can_change_is_refused(shared: Path, victim: Path) -> None:
    sticky = shared / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    run_as_user(NOBODY, LINK, str(victim.parent), str(sticky / "metrics"))
    with pytest.raises(UnsafeFolderError, match=f"symbolic link {sticky / 'metrics'} belongs to nobody"):
        write_atomically(sticky / "metrics" / "precious", b"overwritten\n", 0o644)
    assert victim.read_text() == "precious\n"

    theirs = shared / "theirs"
    (theirs / "inner").mkdir(parents=True)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeFolderError, match=f"folder {theirs} belongs to nobody"):
        write_atomically(theirs / "inner" / "backupd.prom", b"backupd_snapshots 3\n", 0o644)
    assert list((theirs / "inner").iterdir()) == []


def test_a_link_of_root_on_the_way_is_followed(shared: Path, victim: Path) -> None:
    sticky = shared / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "state").symlink_to(victim.parent)
    write_atomically(sticky / "state" / "state.json", b"{}", 0o600)
    assert (victim.parent / "state.json").read_bytes() == b"{}"


def test_in_a_trusted_folder_a_link_at_the_name_is_replaced_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("kept\n")
    (folder / "state.json").symlink_to(elsewhere)
    old_temporary = folder / f".state.json.{os.getpid()}.tmp"
    old_temporary.symlink_to(elsewhere)

    write_atomically(folder / "state.json", b'{"a":1}', 0o600)

    written = folder / "state.json"
    assert not written.is_symlink() and written.read_bytes() == b'{"a":1}'
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert elsewhere.read_text() == "kept\n"
    assert sorted(os.listdir(folder)) == [old_temporary.name, "state.json"]


def test_what_an_interrupted_write_left_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    left = [".state.json.0f3a9c2b7d1e4a56.tmp", ".jobs.json.1234.tmp"]
    kept = ["state.json", ".state.json", ".notes.tmp", "state.json.unreadable-1700000000"]
    for name in left + kept:
        (folder / name).write_text("x")
    remove_temporary_files(folder, "*.json")
    assert sorted(os.listdir(folder)) == sorted(kept)
