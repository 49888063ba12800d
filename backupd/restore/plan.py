"""A restore's plan, made and checked before anything is extracted: the targets (absolute,
normalised, none inside another, none an unfinished earlier restore still holds), how each is
swapped (renamed, or its children when it is a mount point), where it is staged and where its
previous content is kept aside, the missing parents to make, and that every folder the restore
will write in can take new entries."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from backupd.paths import is_within, overlapping
from backupd.restore.errors import RestoreError, describe
from backupd.restore.folder_metadata import read_metadata
from backupd.restore.journal import BY_CHILDREN, BY_RENAME, STAGING, Journal, TargetPlan
from backupd.restore.nofollow import (
    PRIVATE_FOLDER_MODE,
    components,
    deepest_existing,
    lstat,
    make_folder,
    why_unwritable,
)
from backupd.restore.staging_place import NoSafePlace, is_mount_point, mount_points, require_safe, safe_folder_for

CREATED_PARENT_MODE = 0o755
_JOB_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def plan_restore(
    journal_path: Path,
    job_id: str,
    targets: Sequence[str],
    *,
    swap_children: Collection[str],
    unfinished: Collection[Path],
    archive_paths: Mapping[str, str],
    keep_excluded: Sequence[str],
) -> Journal:
    """The journal of a restore of targets, in phase "staging", not yet saved; nothing is made.
    Raises RestoreError."""
    if not _JOB_ID.fullmatch(job_id):
        raise RestoreError(f"job id {job_id!r} cannot name a folder")
    if os.path.lexists(journal_path):
        raise RestoreError(
            f"an earlier restore left its journal {journal_path}; it is recovered when "
            "backupd starts"
        )
    paths = _validated_targets(targets, journal_path)
    _refuse_unfinished(paths, unfinished)
    unknown = set(swap_children) - set(paths)
    if unknown:
        raise RestoreError(f"not a target of this restore: {', '.join(sorted(unknown))}")
    try:
        journal = _plan(journal_path, job_id, paths, set(swap_children), archive_paths)
        journal.keep_excluded = list(keep_excluded)
    except NoSafePlace as error:
        raise RestoreError(f"cannot restore safely: {error}") from None
    except OSError as error:
        raise RestoreError(f"cannot prepare the restore: {describe(error)}") from None
    return journal


def make_planned_folders(journal: Journal) -> None:
    """Make the missing parents and the staging folders, recording each one's identity."""
    for folder in journal.created_folders:
        journal.made[folder] = make_folder(folder, CREATED_PARENT_MODE)
    for folder in journal.staging_folders:
        journal.made[folder] = make_folder(folder, PRIVATE_FOLDER_MODE)
    journal.save()


def _validated_targets(targets: Sequence[str], journal_path: Path) -> list[str]:
    if isinstance(targets, str):
        raise RestoreError("the targets must be a list of paths, not one string")
    if not targets:
        raise RestoreError("nothing to restore: no target paths")
    paths = list(targets)
    for path in paths:
        if not _is_clean_absolute_path(path):
            raise RestoreError(f"{path!r} is not an absolute, normalised path below /")
    overlap = overlapping(paths)
    if overlap is not None:
        outer, inner = overlap
        if inner == outer:
            raise RestoreError(f"{outer} is listed twice")
        raise RestoreError(f"{inner} is inside {outer}; list only {outer}")
    journal_folder = os.path.abspath(journal_path.parent)
    for path in paths:
        if is_within(journal_folder, path):
            raise RestoreError(
                f"{path} holds backupd's own state folder; it cannot be restored in place"
            )
        if os.path.basename(path).startswith((".backupd-restore-", ".backupd-previous-")):
            raise RestoreError(f"{path} is a folder of an earlier restore, not data")
    return paths


def _refuse_unfinished(paths: list[str], unfinished: Collection[Path]) -> None:
    """An earlier restore that could not be undone holds its targets until a person looks;
    the rest of the box can still be restored."""
    for journal_path in unfinished:
        try:
            journal = Journal.load(journal_path)
        except RestoreError as error:
            raise RestoreError(f"{error}; no restore can start until then") from None
        if journal is None:
            continue
        held = [plan.path for plan in journal.targets]
        overlap = [path for path in paths if any(is_within(path, other) or is_within(other, path) for other in held)]
        if overlap:
            raise RestoreError(
                f"restore {journal.job_id} was interrupted and could not be undone, and it holds "
                f"{', '.join(overlap)}: look at {', '.join(held)} and the folders its journal "
                f"{journal_path} names, then restart backupd"
            )


def _is_clean_absolute_path(path: object) -> bool:
    return (
        isinstance(path, str)
        and path.startswith("/")
        and not path.startswith("//")
        and path != "/"
        and "\0" not in path
        and os.path.normpath(path) == path
    )


def _plan(journal_path: Path, job_id: str, paths: list[str], swap_children: set[str],
          archive_paths: Mapping[str, str]) -> Journal:
    points = mount_points()
    created_folders: list[str] = []
    plans: list[TargetPlan] = []
    for index, path in enumerate(paths):
        for folder in _missing_parents(path):
            if folder not in created_folders:
                created_folders.append(folder)
        by_children = path in swap_children or is_mount_point(path, points)
        plan = _plan_target(path, job_id, by_children, index)
        plan.archive_path = archive_paths.get(path)
        plans.append(plan)
    journal = Journal(journal_path, job_id, STAGING, plans, created_folders)
    for folder in journal.staging_folders + journal.aside_folders:
        if lstat(folder) is not None:
            raise RestoreError(
                f"{folder} already exists; remove what an earlier restore left there"
            )
    _refuse_unwritable(journal)
    return journal


def _refuse_unwritable(journal: Journal) -> None:
    """Every folder the restore will create entries in can take them, before anything is
    extracted: the staging places, and where each target goes (or its deepest existing
    ancestor, where missing parents will be made)."""
    folders: list[str] = []
    for plan in journal.targets:
        folders.append(os.path.dirname(plan.staging))
        folders.append(deepest_existing(plan.path if plan.method == BY_CHILDREN else os.path.dirname(plan.path)))
    for folder in dict.fromkeys(folders):
        reason = why_unwritable(folder)
        if reason is not None:
            raise RestoreError(f"nothing was restored: {reason}")


def _missing_parents(path: str) -> list[str]:
    """The parent folders of path that do not exist yet, outermost first; refuses a parent
    that is a symbolic link or not a folder."""
    missing: list[str] = []
    current = "/"
    for name in components(os.path.dirname(path)):
        current = os.path.join(current, name)
        if missing:
            missing.append(current)
            continue
        info = lstat(current)
        if info is None:
            missing.append(current)
        elif stat.S_ISLNK(info.st_mode):
            raise RestoreError(
                f"cannot restore {path}: {current} is a symbolic link; name the real folder instead"
            )
        elif not stat.S_ISDIR(info.st_mode):
            raise RestoreError(f"cannot restore {path}: {current} is not a folder")
    return missing


def _plan_target(path: str, job_id: str, by_children: bool, index: int) -> TargetPlan:
    staging_name = f".backupd-restore-{job_id}"
    aside_name = f".backupd-previous-{job_id}"
    if not by_children:
        place = safe_folder_for(os.path.dirname(path))
        return TargetPlan(
            path, BY_RENAME, os.path.join(place, staging_name), os.path.join(place, aside_name),
            aside_name=f"{index}.{os.path.basename(path)}",
        )
    info = lstat(path)
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise RestoreError(
            f"{path} cannot be renamed (it is a mount point) and is not a folder whose content "
            "could be replaced instead"
        )
    require_safe(path)
    return TargetPlan(
        path,
        BY_CHILDREN,
        os.path.join(path, staging_name),
        os.path.join(path, aside_name),
        old_metadata=read_metadata(path),
    )
