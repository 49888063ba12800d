"""Swapping one target into place, and taking the swap back: each step journaled before it is
taken. A target renamed whole is moved aside to `.backupd-previous-<job_id>/...`, then its
staged copy renamed into place; a target whose children are swapped has every child moved
aside, then every staged child moved in."""

from __future__ import annotations

import errno
import stat

from backupd.restore.errors import NotInSnapshot, RestoreError, counted, describe
from backupd.restore.folder_metadata import read_metadata
from backupd.restore.journal import BY_CHILDREN, BY_RENAME, MOVING_ASIDE, PLACING, UNTOUCHED, Journal, TargetPlan
from backupd.restore.nofollow import PRIVATE_FOLDER_MODE, lstat, make_folder, move_children, opened_own_folder, rename


def check_staged_content(journal: Journal) -> None:
    """The staging folders are still the ones the restore made, and hold every target: nothing
    is swapped unless the snapshot held them all."""
    for folder in journal.staging_folders:
        try:
            with opened_own_folder(folder, journal.made.get(folder)):
                pass
        except OSError as error:
            raise RestoreError(f"cannot use the staging folder: {describe(error)}") from None
    missing: list[str] = []
    for plan in journal.targets:
        try:
            info = lstat(plan.staged)
        except OSError as error:
            raise RestoreError(
                f"cannot look at the extracted copy of {plan.path}: {describe(error)}"
            ) from None
        if info is None:
            missing.append(plan.path)
            continue
        if plan.method == BY_CHILDREN and not stat.S_ISDIR(info.st_mode):
            raise RestoreError(
                f"{plan.path} is a mount point, so only a folder can be restored there, but the "
                "snapshot holds something else; nothing was restored"
            )
    if missing:
        raise NotInSnapshot(missing)


def swap(journal: Journal, plan: TargetPlan) -> None:
    if plan.method == BY_RENAME:
        _swap_by_rename(journal, plan)
    else:
        _swap_children(journal, plan)


def _make_aside_folder(journal: Journal, folder: str) -> None:
    if folder not in journal.made and lstat(folder) is None:
        journal.made[folder] = make_folder(folder, PRIVATE_FOLDER_MODE)


def _swap_by_rename(journal: Journal, plan: TargetPlan) -> None:
    _make_aside_folder(journal, plan.aside)
    if lstat(plan.path) is not None:
        journal.set_step(plan, MOVING_ASIDE)
        try:
            rename(plan.path, plan.aside_path)
        except OSError as error:
            if error.errno in (errno.EXDEV, errno.EBUSY):
                # The staged copy lies beside the target, on the parent's filesystem: only a
                # new prepare() can stage inside the target and swap its children instead.
                raise RestoreError(
                    f"{plan.path} cannot be renamed ({error.strerror}); it became a mount point "
                    "after the restore was prepared. Start the restore again"
                ) from None
            raise
    journal.set_step(plan, PLACING)
    rename(plan.staged, plan.path)


def _swap_children(journal: Journal, plan: TargetPlan) -> None:
    plan.new_metadata = read_metadata(plan.staged)
    _make_aside_folder(journal, plan.aside)
    journal.set_step(plan, MOVING_ASIDE)
    _refuse_conflicts(move_children(plan.path, plan.aside, skip=plan.own_folders), plan.aside)
    journal.set_step(plan, PLACING)
    _refuse_conflicts(move_children(plan.staged, plan.path), plan.path)


def _refuse_conflicts(conflicts: list[str], destination: str) -> None:
    if conflicts:
        raise RestoreError(
            f"{counted(len(conflicts), 'entry')} appeared in {destination} during the restore "
            f"(first: {conflicts[0]})"
        )


def undo(journal: Journal, plan: TargetPlan) -> str | None:
    """Take back the steps of one target, latest first, whether or not the latest was taken,
    journaling each step taken back; what stands in the way, if anything does."""
    take_back = _take_back_rename if plan.method == BY_RENAME else _take_back_children
    while plan.step != UNTOUCHED:
        conflict = take_back(plan)
        if conflict is not None:
            return conflict
        journal.set_step(plan, MOVING_ASIDE if plan.step == PLACING else UNTOUCHED)
    return None


def _take_back_rename(plan: TargetPlan) -> str | None:
    if plan.step == PLACING:
        if lstat(plan.path) is not None and lstat(plan.staged) is None:
            rename(plan.path, plan.staged)
        return None
    if lstat(plan.aside_path) is None:
        return None
    if lstat(plan.path) is not None:
        return f"{plan.path} is in the way of its previous content, kept at {plan.aside_path}"
    rename(plan.aside_path, plan.path)
    return None


def _take_back_children(plan: TargetPlan) -> str | None:
    # While placing, the target holds only staged children, while moving aside only previous
    # ones: a step is taken back by moving every child of one folder, journaled as a whole.
    if plan.step == PLACING:
        source, destination, skip = plan.path, plan.staged, plan.own_folders
    elif lstat(plan.aside) is not None:
        source, destination, skip = plan.aside, plan.path, frozenset()
    else:
        return None
    in_the_way = move_children(source, destination, skip=skip)
    if in_the_way:
        return (
            f"{counted(len(in_the_way), 'entry')} of {source} cannot go back to {destination} "
            f"(first: {in_the_way[0]}); the previous content is in {plan.aside}"
        )
    return None
