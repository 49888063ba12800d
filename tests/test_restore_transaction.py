"""The restore transaction on a real filesystem: swaps, undo, crash recovery, mount points."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from backupd.restore.errors import RestoreError
from backupd.restore.transaction import ExtractGroup, RestoreTransaction, recover

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOB = "42"
OLD_TIME_NS = 1_600_000_000_000_000_000
NEW_TIME_NS = 1_700_000_000_000_000_000

Entry = tuple[object, ...]


# --- trees and their listings ---------------------------------------------------------------


def build_tree(root: Path, marker: str, time_ns: int) -> None:
    """A folder with every kind of entry a restore must carry over intact."""
    root.mkdir(parents=True)
    (root / "marker").write_text(marker)
    (root / f"only-{marker}").write_text(marker * 3)
    sub = root / "sub"
    sub.mkdir()
    (sub / "nested").write_text(f"nested {marker}")
    (root / "empty").mkdir()
    os.symlink("marker", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "marker", sub / "hardlink")
    os.setxattr(root / "marker", "user.origin", marker.encode())
    os.setxattr(root, "user.folder", marker.encode())
    setuid = root / "setuid"
    setuid.write_text("#!/bin/sh\n")
    os.chmod(setuid, 0o4755)
    sticky = root / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    os.mkfifo(root / "fifo")
    locked = root / "locked"
    locked.mkdir()
    (locked / "secret").write_text(marker)
    os.chmod(locked / "secret", 0)
    os.chmod(locked, 0o555)
    os.chmod(root, 0o750 if marker == "new" else 0o755)
    for path in sorted(walk(root), key=lambda path: -len(path.parts)):
        os.utime(path, ns=(time_ns, time_ns), follow_symlinks=False)
    os.utime(root, ns=(time_ns, time_ns))


def walk(root: Path) -> Iterator[Path]:
    for entry in os.scandir(root):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from walk(path)


def describe(path: Path) -> Entry:
    info = os.lstat(path)
    content: object = None
    if stat.S_ISREG(info.st_mode):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(info.st_mode):
        content = os.readlink(path)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    if not stat.S_ISLNK(info.st_mode):
        xattrs = tuple(sorted((name, os.getxattr(path, name)) for name in os.listxattr(path)))
    return (stat.filemode(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns,
            info.st_nlink, info.st_ino, content, xattrs)


def listing(root: Path, *, ignore_mtime_of: Collection[str] = ()) -> dict[str, Entry]:
    """Every entry under root (root itself as "."), with modes, owners, mtimes, link counts,
    inodes, content hashes, symlink targets and xattrs."""
    entries = {".": describe(root)}
    entries.update({str(path.relative_to(root)): describe(path) for path in walk(root)})
    for name in ignore_mtime_of:
        mode, uid, gid, _, nlink, inode, content, xattrs = entries[name]
        entries[name] = (mode, uid, gid, None, nlink, inode, content, xattrs)
    return entries


def without_root_inode(entries: dict[str, Entry]) -> dict[str, Entry]:
    root = entries["."]
    return {**entries, ".": root[:5] + root[6:]}


def leftovers(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob(".backupd-*")]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state / "restore.json"


@pytest.fixture
def box(tmp_path: Path) -> Path:
    box = tmp_path / "box"
    box.mkdir()
    return box


def group_of(transaction: RestoreTransaction, target: Path) -> tuple[ExtractGroup, str]:
    """The extract group that holds target, and target's archive path."""
    for group in transaction.extract_groups():
        if str(target) in group.targets:
            return group, group.archive_paths[group.targets.index(str(target))]
    raise AssertionError(f"{target} is not a target of the restore")


def stage(transaction: RestoreTransaction, target: Path, marker: str = "new") -> Path:
    """What borg extract does in the restore action: write the snapshot's copy of target
    below the held descriptor of its staging folder; where the copy is."""
    group, archive_path = group_of(transaction, target)
    with transaction.opened_staging_folder(group) as staging_fd:
        build_tree(Path(f"/proc/self/fd/{staging_fd}", archive_path), marker, NEW_TIME_NS)
    return group.cwd / archive_path


def swap_and_clean_up(transaction: RestoreTransaction) -> None:
    """What the restore action does once borg has extracted every group."""
    transaction.swap_into_place()
    transaction.clean_up()


def set_immutable(path: Path, immutable: bool) -> None:
    result = subprocess.run(["chattr", "+i" if immutable else "-i", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"chattr cannot make files immutable here: {result.stderr.strip()}")


# --- swapping -------------------------------------------------------------------------------


def test_folder_target_is_replaced_by_the_staged_folder(box: Path, journal: Path) -> None:
    target = box / "srv" / "app"
    build_tree(target, "old", OLD_TIME_NS)
    transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
    assert json.loads(journal.read_text())["phase"] == "staging"
    staged = stage(transaction, target)
    expected = listing(staged)

    swap_and_clean_up(transaction)

    assert listing(target) == expected
    assert (target / "marker").read_text() == "new"
    assert not (target / "only-old").exists()
    assert sorted(os.listdir(target.parent)) == ["app"]
    assert leftovers(box) == []
    assert not journal.exists()


def test_file_target(box: Path, journal: Path) -> None:
    target = box / "etc" / "edgebox.conf"
    target.parent.mkdir()
    target.write_text("old")
    transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
    group, archive_path = group_of(transaction, target)
    with transaction.opened_staging_folder(group) as staging_fd:
        staged = Path(f"/proc/self/fd/{staging_fd}", archive_path)
        staged.parent.mkdir(parents=True)
        staged.write_text("new")
        os.chmod(staged, 0o640)

    swap_and_clean_up(transaction)

    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["edgebox.conf"]
    assert not journal.exists()


def test_target_that_did_not_exist_is_placed_with_its_missing_parents(
    box: Path, journal: Path
) -> None:
    target = box / "new" / "deeper" / "app"
    transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
    assert (box / "new" / "deeper").is_dir()
    stage(transaction, target)

    swap_and_clean_up(transaction)

    assert (target / "marker").read_text() == "new"
    assert os.listdir(box / "new" / "deeper") == ["app"]
    assert leftovers(box) == [] and not journal.exists()


def test_abort_removes_the_parents_it_created(box: Path, journal: Path) -> None:
    before = listing(box)
    transaction = RestoreTransaction.prepare(journal, JOB, [str(box / "new" / "deeper" / "app")])
    stage(transaction, box / "new" / "deeper" / "app")

    transaction.abort()

    assert listing(box, ignore_mtime_of=["."]) == listing_without_mtime(before, ".")
    assert not journal.exists()


def listing_without_mtime(entries: dict[str, Entry], *names: str) -> dict[str, Entry]:
    result = dict(entries)
    for name in names:
        mode, uid, gid, _, nlink, inode, content, xattrs = result[name]
        result[name] = (mode, uid, gid, None, nlink, inode, content, xattrs)
    return result


def test_two_targets_in_different_parents(box: Path, journal: Path) -> None:
    first, second = box / "one" / "app", box / "two" / "app"
    build_tree(first, "old", OLD_TIME_NS)
    build_tree(second, "old", OLD_TIME_NS)
    transaction = RestoreTransaction.prepare(journal, JOB, [str(first), str(second)])
    expected = {target: listing(stage(transaction, target)) for target in (first, second)}

    swap_and_clean_up(transaction)

    assert {target: listing(target) for target in (first, second)} == expected
    assert leftovers(box) == [] and not journal.exists()


def test_extract_groups_follow_the_staging_folders(box: Path, journal: Path) -> None:
    targets = [box / "one" / "a", box / "one" / "b", box / "two" / "c", box / "mounted"]
    for target in targets:
        target.mkdir(parents=True)
    transaction = RestoreTransaction.prepare(
        journal, JOB, [str(target) for target in targets], swap_children=[str(box / "mounted")]
    )

    assert transaction.extract_groups() == [
        ExtractGroup(box / "one" / f".backupd-restore-{JOB}", (str(targets[0]), str(targets[1])),
                     (str(targets[0]).lstrip("/"), str(targets[1]).lstrip("/"))),
        ExtractGroup(box / "two" / f".backupd-restore-{JOB}", (str(targets[2]),), (str(targets[2]).lstrip("/"),)),
        ExtractGroup(box / "mounted" / f".backupd-restore-{JOB}", (str(targets[3]),), (str(targets[3]).lstrip("/"),)),
    ]
    staging = box / "one" / f".backupd-restore-{JOB}"
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    transaction.abort()


def test_a_target_missing_from_staging_changes_nothing(box: Path, journal: Path) -> None:
    present, missing = box / "one" / "app", box / "two" / "app"
    build_tree(present, "old", OLD_TIME_NS)
    build_tree(missing, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=[".", "one", "two"])
    transaction = RestoreTransaction.prepare(journal, JOB, [str(present), str(missing)])
    stage(transaction, present)

    with pytest.raises(RestoreError, match=f"does not hold {missing}"):
        transaction.swap_into_place()

    assert json.loads(journal.read_text())["phase"] == "staging"
    assert (present / "marker").read_text() == "old"
    transaction.abort()
    assert listing(box, ignore_mtime_of=[".", "one", "two"]) == before
    assert not journal.exists()


def test_a_symlink_target_is_moved_as_a_link(box: Path, journal: Path) -> None:
    elsewhere = box / "elsewhere"
    build_tree(elsewhere, "old", OLD_TIME_NS)
    untouched = listing(elsewhere)
    target = box / "srv" / "app"
    target.parent.mkdir()
    os.symlink(elsewhere, target)
    transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
    stage(transaction, target)

    swap_and_clean_up(transaction)

    assert not target.is_symlink() and (target / "marker").read_text() == "new"
    assert listing(elsewhere) == untouched


def test_a_symlink_on_the_way_to_a_target_is_refused(box: Path, journal: Path) -> None:
    (box / "real").mkdir()
    os.symlink(box / "real", box / "alias")

    with pytest.raises(RestoreError, match="symbolic link"):
        RestoreTransaction.prepare(journal, JOB, [str(box / "alias" / "app")])
    assert not journal.exists()


@pytest.mark.parametrize("targets", [
    [], ["relative/path"], ["/"], ["/srv/../etc"], ["/srv/app/"], ["//srv"], ["/srv", "/srv"],
    ["/srv", "/srv/app"], ["/srv/app", "/srv/app/data"],
])
def test_bad_targets_are_refused(journal: Path, targets: list[str]) -> None:
    with pytest.raises(RestoreError):
        RestoreTransaction.prepare(journal, JOB, targets)
    assert not journal.exists()


def test_the_state_folder_cannot_be_a_target(journal: Path) -> None:
    with pytest.raises(RestoreError, match="state folder"):
        RestoreTransaction.prepare(journal, JOB, [str(journal.parent.parent)])


def test_prepare_refuses_while_an_earlier_journal_exists(box: Path, journal: Path) -> None:
    first = RestoreTransaction.prepare(journal, JOB, [str(box / "app")])

    with pytest.raises(RestoreError, match="earlier restore"):
        RestoreTransaction.prepare(journal, "43", [str(box / "other")])
    first.abort()


# --- abort and failed commits leave everything as it was --------------------------------------


def test_abort_after_prepare_leaves_everything_as_before(box: Path, journal: Path) -> None:
    renamed, children = box / "one" / "app", box / "mounted"
    build_tree(renamed, "old", OLD_TIME_NS)
    build_tree(children, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=[".", "one"])
    transaction = RestoreTransaction.prepare(
        journal, JOB, [str(renamed), str(children)], swap_children=[str(children)]
    )
    stage(transaction, renamed)
    stage(transaction, children)

    transaction.abort()
    transaction.abort()

    assert listing(box, ignore_mtime_of=[".", "one"]) == before
    assert not journal.exists()


def test_a_failed_rename_aside_undoes_the_targets_already_swapped(box: Path, journal: Path) -> None:
    first, second = box / "one" / "app", box / "two" / "app"
    build_tree(first, "old", OLD_TIME_NS)
    build_tree(second, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=[".", "one", "two"])
    transaction = RestoreTransaction.prepare(journal, JOB, [str(first), str(second)])
    stage(transaction, first)
    stage(transaction, second)
    set_immutable(second, True)  # the target itself cannot be renamed aside
    try:
        with pytest.raises(RestoreError, match="previous content is back in place"):
            transaction.swap_into_place()
    finally:
        set_immutable(second, False)

    assert listing(box, ignore_mtime_of=[".", "one", "two"]) == before
    assert leftovers(box) == [] and not journal.exists()
    transaction.abort()


def test_a_failed_placing_undoes_a_half_swapped_target(box: Path, journal: Path) -> None:
    first, second = box / "one" / "app", box / "two" / "app"
    build_tree(first, "old", OLD_TIME_NS)
    build_tree(second, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=[".", "one", "two"])
    transaction = RestoreTransaction.prepare(journal, JOB, [str(first), str(second)])
    stage(transaction, first)
    staged_second = stage(transaction, second)
    set_immutable(staged_second, True)  # moved aside, but the staged copy cannot be placed
    try:
        with pytest.raises(RestoreError, match="previous content is back in place") as failure:
            transaction.swap_into_place()
        assert "deleting the staging folders failed" in str(failure.value)
        assert (first / "marker").read_text() == (second / "marker").read_text() == "old"
    finally:
        set_immutable(staged_second, False)

    transaction.abort()

    assert listing(box, ignore_mtime_of=[".", "one", "two"]) == before
    assert leftovers(box) == [] and not journal.exists()


def test_a_failed_child_swap_puts_every_child_and_the_folder_metadata_back(
    box: Path, journal: Path
) -> None:
    target = box / "mounted"
    build_tree(target, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=["."])
    transaction = RestoreTransaction.prepare(
        journal, JOB, [str(target)], swap_children=[str(target)]
    )
    staged = stage(transaction, target)
    set_immutable(staged / "sub", True)
    try:
        with pytest.raises(RestoreError, match="previous content is back in place"):
            transaction.swap_into_place()
    finally:
        set_immutable(staged / "sub", False)

    transaction.abort()

    assert listing(box, ignore_mtime_of=["."]) == before
    assert not journal.exists()


# --- a target whose children are swapped (a mount point) --------------------------------------


def test_children_swap_replaces_content_and_applies_the_staged_folder_metadata(
    box: Path, journal: Path
) -> None:
    target = box / "data"
    build_tree(target, "old", OLD_TIME_NS)
    os.setxattr(target, "user.only-old", b"x")
    transaction = RestoreTransaction.prepare(
        journal, JOB, [str(target)], swap_children=[str(target)]
    )
    assert transaction.extract_groups()[0].cwd.parent == target
    staged = stage(transaction, target)
    os.chown(staged, 1234, 5678)
    expected = without_root_inode(listing(staged))
    inode = target.stat().st_ino

    swap_and_clean_up(transaction)

    assert without_root_inode(listing(target)) == expected
    assert target.stat().st_ino == inode
    assert "user.only-old" not in os.listxattr(target)
    assert not journal.exists() and leftovers(box) == []


@contextmanager
def tmpfs_mounted_at(folder: Path) -> Iterator[None]:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}), so there is no real "
                    "mount point to restore into; the child swap is tested with swap_children")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_real_mount_point_target(box: Path, journal: Path) -> None:
    target = box / "data"
    target.mkdir()
    with tmpfs_mounted_at(target):
        build_tree_inside(target, "old", OLD_TIME_NS)
        transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
        staging = target / f".backupd-restore-{JOB}"
        assert transaction.extract_groups() == [ExtractGroup(staging, (str(target),), (str(target).lstrip("/"),))]
        expected = without_root_inode(listing(stage(transaction, target)))

        swap_and_clean_up(transaction)

        assert os.path.ismount(target)
        assert without_root_inode(listing(target)) == expected
        assert not journal.exists() and leftovers(target) == []


def test_a_target_that_becomes_a_mount_point_after_prepare(box: Path, journal: Path) -> None:
    target = box / "data"
    target.mkdir()
    transaction = RestoreTransaction.prepare(journal, JOB, [str(target)])
    stage(transaction, target)
    with tmpfs_mounted_at(target):
        build_tree_inside(target, "old", OLD_TIME_NS)
        before = listing(target)

        with pytest.raises(RestoreError, match="became a mount point"):
            transaction.swap_into_place()

        assert listing(target) == before
        assert leftovers(box) == [] and not journal.exists()


def build_tree_inside(root: Path, marker: str, time_ns: int) -> None:
    """build_tree for an existing folder, such as the root of a mount."""
    scratch = root / "scratch"
    build_tree(scratch, marker, time_ns)
    for name in os.listdir(scratch):
        os.rename(scratch / name, root / name)
    os.rmdir(scratch)


# --- recovery from hand-made journals -------------------------------------------------------


def journal_document(phase: str, targets: list[dict[str, object]],
                     created_folders: list[str] | None = None) -> dict[str, object]:
    return {"version": 1, "job_id": JOB, "phase": phase, "created_folders": created_folders or [],
            "targets": targets}


def renamed_target(target: Path, step: str) -> dict[str, object]:
    return {"path": str(target), "method": "rename",
            "staging": str(target.parent / f".backupd-restore-{JOB}"),
            "aside": str(target.parent / f".backupd-previous-{JOB}"), "step": step,
            "old_metadata": None, "new_metadata": None}


def write_journal(journal: Path, document: dict[str, object]) -> None:
    journal.write_text(json.dumps(document))
    os.chmod(journal, 0o600)


def staged_of(target: Path) -> Path:
    return target.parent / f".backupd-restore-{JOB}" / str(target).lstrip("/")


def aside_of(target: Path) -> Path:
    return target.parent / f".backupd-previous-{JOB}" / target.name


def test_recover_without_a_journal_returns_none(journal: Path) -> None:
    assert recover(journal) is None


def test_recover_from_staging_deletes_the_staging_folders(box: Path, journal: Path) -> None:
    target = box / "app"
    build_tree(target, "old", OLD_TIME_NS)
    before = listing(target)
    build_tree(staged_of(target), "new", NEW_TIME_NS)
    write_journal(journal, journal_document("staging", [renamed_target(target, "untouched")]))

    description = recover(journal)

    assert description is not None and "before any target was replaced" in description
    assert listing(target) == before
    assert leftovers(box) == [] and not journal.exists()


def test_recover_from_swapping_puts_the_previous_content_back(box: Path, journal: Path) -> None:
    placed, aside_only, untouched, new = (
        box / name for name in ("placed", "aside", "untouched", "new")
    )
    for target in (placed, aside_only, untouched):
        build_tree(target, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=["."])
    for target in (placed, aside_only, untouched, new):
        build_tree(staged_of(target), "new", NEW_TIME_NS)
    aside_of(placed).parent.mkdir(mode=0o700)
    for target in (placed, aside_only):
        os.rename(target, aside_of(target))
    for target in (placed, new):
        os.rename(staged_of(target), target)
    write_journal(journal, journal_document("swapping", [
        renamed_target(placed, "placing"),  # both renames done
        renamed_target(aside_only, "placing"),  # moved aside, not placed yet
        renamed_target(untouched, "moving_aside"),  # not moved yet
        renamed_target(new, "placing"),  # did not exist before; placed
    ]))

    description = recover(journal)

    assert description is not None and "put the previous content of 4 targets back" in description
    assert listing(box, ignore_mtime_of=["."]) == before
    assert not journal.exists()


def test_recover_from_swapping_children_restores_the_folder(box: Path, journal: Path) -> None:
    target = box / "mounted"
    build_tree(target, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=["."])
    old_metadata = folder_metadata(target)
    staging, aside = target / f".backupd-restore-{JOB}", target / f".backupd-previous-{JOB}"
    staged = staging / str(target).lstrip("/")
    build_tree(staged, "new", NEW_TIME_NS)
    aside.mkdir(mode=0o700)
    for name in os.listdir(target):
        if not name.startswith(".backupd-"):
            os.rename(target / name, aside / name)
    for name in ["marker", "sub", "fifo"]:  # part of the new children placed
        os.rename(staged / name, target / name)
    os.chmod(target, 0o700)
    write_journal(journal, journal_document("swapping", [{
        "path": str(target), "method": "children", "staging": str(staging), "aside": str(aside),
        "step": "placing", "old_metadata": old_metadata, "new_metadata": folder_metadata(staged),
    }]))

    recover(journal)

    assert listing(box, ignore_mtime_of=["."]) == before
    assert not journal.exists()


def test_recover_after_an_interrupted_undo_of_a_child_swap(box: Path, journal: Path) -> None:
    target = box / "mounted"
    build_tree(target, "old", OLD_TIME_NS)
    before = listing(box, ignore_mtime_of=["."])
    old_metadata = folder_metadata(target)
    staging, aside = target / f".backupd-restore-{JOB}", target / f".backupd-previous-{JOB}"
    staged = staging / str(target).lstrip("/")
    build_tree(staged, "new", NEW_TIME_NS)
    aside.mkdir(mode=0o700)
    for name in ["marker", "sub", "locked", "link"]:  # the rest went back before the crash
        os.rename(target / name, aside / name)
    write_journal(journal, journal_document("swapping", [{
        "path": str(target), "method": "children", "staging": str(staging), "aside": str(aside),
        "step": "moving_aside", "old_metadata": old_metadata,
        "new_metadata": folder_metadata(staged),
    }]))

    recover(journal)

    assert listing(box, ignore_mtime_of=["."]) == before
    assert not journal.exists()


def folder_metadata(path: Path) -> dict[str, object]:
    info = os.lstat(path)
    return {"mode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid,
            "atime_ns": info.st_atime_ns, "mtime_ns": info.st_mtime_ns,
            "xattrs": {name: base64.b64encode(os.getxattr(path, name)).decode()
                       for name in os.listxattr(path)}}


def test_recover_from_committed_keeps_the_new_content(box: Path, journal: Path) -> None:
    first, second = box / "one", box / "two"
    for target in (first, second):
        build_tree(target, "old", OLD_TIME_NS)
        build_tree(staged_of(target), "new", NEW_TIME_NS)
    expected = {target: listing(staged_of(target)) for target in (first, second)}
    aside_of(first).parent.mkdir(mode=0o700)
    for target in (first, second):
        os.rename(target, aside_of(target))
        os.rename(staged_of(target), target)
    write_journal(journal, journal_document(
        "committed", [renamed_target(first, "placing"), renamed_target(second, "placing")]
    ))

    description = recover(journal)

    assert description is not None and "kept the snapshot's content in 2 targets" in description
    assert {target: listing(target) for target in (first, second)} == expected
    assert leftovers(box) == [] and not journal.exists()


# --- SIGKILL in the middle of the swap and clean-up ------------------------------------------

COMMIT_IN_A_CHILD = """
import json, sys
from pathlib import Path
from backupd.restore.transaction import RestoreTransaction
journal, big, *small = sys.argv[1:]
transaction = RestoreTransaction.prepare(Path(journal), "crash", [big, *small], swap_children=[big])
staged = {target: str(group.cwd / archive_path) for group in transaction.extract_groups()
          for target, archive_path in zip(group.targets, group.archive_paths)}
print(json.dumps(staged), flush=True)
sys.stdin.readline()
transaction.swap_into_place()
transaction.clean_up()
print("committed", flush=True)
"""

BIG_CHILDREN = 2000
SMALL_TARGETS = 200
SMALL_PARENTS = 4
PHASES = ("staging", "swapping", "committed")  # "finished": killed after the journal was removed


@dataclass
class CrashLayout:
    root: Path
    journal: Path
    big: Path
    small: list[Path]
    incoming: Path  # the snapshot's copies, renamed into the staging folders once prepared

    @classmethod
    def build(cls, root: Path) -> CrashLayout:
        big = root / "box" / "mounted"
        small = [root / "box" / f"parent-{index % SMALL_PARENTS}" / f"app-{index}"
                 for index in range(SMALL_TARGETS)]
        layout = cls(root, root / "state" / "restore.json", big, small, root / "incoming")
        layout.journal.parent.mkdir(parents=True, mode=0o700)
        build_big(big, "old")
        build_big(layout.incoming / "mounted", "new")
        for target in small:
            build_small(target, "old")
            build_small(layout.incoming / target.name, "new")
        return layout

    def stage(self, staged_paths: dict[str, str]) -> None:
        for target, staged in staged_paths.items():
            Path(staged).parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.incoming / Path(target).name, staged)

    def phase(self) -> str:
        if not self.journal.exists():
            return "finished"
        return str(json.loads(self.journal.read_text())["phase"])

    def swap_progress(self) -> str:
        """Where the swap was: the big target's step, and how many small targets were placed."""
        targets = json.loads(self.journal.read_text())["targets"]
        placing = sum(target["step"] == "placing" for target in targets[1:])
        return f"big {targets[0]['step']}, {placing} small placing"

    def markers(self) -> Counter[str]:
        """How many targets are entirely old, entirely new, or mixed."""
        return Counter([big_marker(self.big)] + [small_marker(target) for target in self.small])


def build_big(folder: Path, marker: str) -> None:
    folder.mkdir(parents=True)
    for index in range(BIG_CHILDREN // 2):
        os.link(marker_file(folder.parent, marker), folder / f"{marker}-{index}")
        os.link(marker_file(folder.parent, marker), folder / f"shared-{index}")
    os.chmod(folder, 0o750 if marker == "new" else 0o755)


def marker_file(folder: Path, marker: str) -> Path:
    """One file per marker and folder: the crash test's thousands of files are links to it,
    which makes them quick to create."""
    path = folder / f"{marker}.template"
    if not path.exists():
        path.write_text(marker)
    return path


def big_marker(folder: Path) -> str:
    names = set(os.listdir(folder))
    contents = {(folder / name).read_text() for name in names}
    mode = stat.S_IMODE(folder.stat().st_mode)
    for marker, wanted_mode in (("old", 0o755), ("new", 0o750)):
        expected_names = {f"{prefix}-{index}" for prefix in (marker, "shared")
                          for index in range(BIG_CHILDREN // 2)}
        if names == expected_names and contents == {marker} and mode == wanted_mode:
            return marker
    return "mixed"


def build_small(folder: Path, marker: str) -> None:
    folder.mkdir(parents=True)
    os.link(marker_file(folder.parent, marker), folder / "marker")
    os.link(marker_file(folder.parent, marker), folder / f"only-{marker}")


def small_marker(folder: Path) -> str:
    if not folder.is_dir():
        return "missing"
    names = sorted(os.listdir(folder))
    marker = (folder / "marker").read_text() if "marker" in names else "?"
    return marker if names == ["marker", f"only-{marker}"] else "mixed"


@dataclass(frozen=True)
class Kill:
    """When to SIGKILL the committing child: a delay after it was told to commit, or as soon
    as the journal shows a phase (the committed phase lasts only a few ms)."""

    after_seconds: float = 0.0
    on_phase: str | None = None

    def describe(self) -> str:
        if self.on_phase is not None:
            return f"on seeing {self.on_phase}"
        return f"after {self.after_seconds * 1000:.1f} ms"


def commit_in_a_child(layout: CrashLayout, kill: Kill | None) -> tuple[str, float]:
    """Swap and clean up in a child process and SIGKILL it as kill says (never when None); the
    journal phase it left behind, and how long it ran."""
    child = subprocess.Popen(
        [sys.executable, "-c", COMMIT_IN_A_CHILD, str(layout.journal), str(layout.big),
         *map(str, layout.small)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=PROJECT_ROOT,
    )
    assert child.stdin is not None and child.stdout is not None
    layout.stage(json.loads(child.stdout.readline()))
    started = time.perf_counter()
    child.stdin.write(b"go\n")
    child.stdin.flush()
    if kill is None:
        assert child.stdout.readline() == b"committed\n"
    else:
        time.sleep(kill.after_seconds)
        while kill.on_phase not in (None, layout.phase()) and child.poll() is None:
            pass
        child.send_signal(signal.SIGKILL)
    child.wait()
    elapsed = time.perf_counter() - started
    child.stdin.close()
    child.stdout.close()
    return layout.phase(), elapsed


def crash_and_recover(root: Path, kill: Kill | None) -> tuple[str, float]:
    layout = CrashLayout.build(root)
    phase, elapsed = commit_in_a_child(layout, kill)
    if kill is not None:
        where = f": {layout.swap_progress()}" if phase == "swapping" else ""
        print(f"  killed {kill.describe()}, in phase {phase}{where}")
    recover(layout.journal)
    expected = "old" if phase in ("staging", "swapping") else "new"
    assert layout.markers() == Counter({expected: 1 + SMALL_TARGETS}), (phase, layout.markers())
    assert leftovers(root / "box") == [] and not layout.journal.exists()
    assert os.listdir(layout.journal.parent) == []
    shutil.rmtree(root)
    return phase, elapsed


def test_a_commit_killed_at_any_moment_is_recovered_whole(tmp_path: Path) -> None:
    _, duration = crash_and_recover(tmp_path / "uninterrupted", None)
    kills = [Kill(after_seconds=delay) for delay in (0, 0.001, 0.005, 0.010, 0.020, 0.080)]
    kills += [Kill(after_seconds=duration * fraction) for fraction in (0.5, 0.9)]
    kills += [Kill(on_phase="swapping"), Kill(on_phase="committed")]
    phases = [crash_and_recover(tmp_path / f"kill-{index}", kill)[0]
              for index, kill in enumerate(kills)]
    while "committed" not in phases and len(phases) < len(kills) + 5:
        phases.append(crash_and_recover(tmp_path / f"kill-{len(phases)}", kills[-1])[0])

    killed_in = Counter(phases)
    print(f"commit took {duration * 1000:.0f} ms; SIGKILLs by journal phase: {dict(killed_in)}")
    assert all(killed_in[phase] >= 1 for phase in PHASES), killed_in


# --- before anything is extracted -----------------------------------------------------------


def test_a_target_on_a_read_only_mount_is_refused_before_anything_is_made(box: Path, journal: Path) -> None:
    readonly = box / "etc"
    readonly.mkdir()
    with tmpfs_mounted_at(readonly):
        (readonly / "app.conf").write_text("old")
        subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True)
        before = listing(box)
        for target in (readonly / "app.conf", readonly / "new" / "deeper", readonly):
            with pytest.raises(RestoreError, match=f"nothing was restored: {readonly} is on a read-only file system"):
                RestoreTransaction.prepare(journal, JOB, [str(target)])
            assert listing(box) == before and not journal.exists()


def test_an_unfinished_restore_holds_only_its_own_targets(box: Path, journal: Path) -> None:
    held, free = box / "held" / "app", box / "free" / "app"
    for target in (held, free):
        target.mkdir(parents=True)
    unfinished = journal.with_name("17.json")
    write_journal(unfinished, journal_document("swapping", [renamed_target(held, "moving_aside")]))
    for blocked in (held, held / "inside", held.parent):
        with pytest.raises(RestoreError, match=f"restore {JOB} was interrupted and could not be undone"):
            RestoreTransaction.prepare(journal, "18", [str(blocked)], unfinished=[unfinished])
    transaction = RestoreTransaction.prepare(journal, "18", [str(free)], unfinished=[unfinished])
    transaction.abort()
    unfinished.write_text("{not json")
    with pytest.raises(RestoreError, match="unreadable.*no restore can start until then"):
        RestoreTransaction.prepare(journal, "18", [str(free)], unfinished=[unfinished])
