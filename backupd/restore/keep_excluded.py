"""What the snapshot's exclude patterns match was never in it, so the snapshot's copy cannot
replace it: before the previous content is deleted, it is moved back into place."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from backupd.borg.patterns import exclude_matcher
from backupd.restore.journal import BY_RENAME, Journal
from backupd.restore.nofollow import ensure_folder_like, lstat, opened_folder, rename


def keep_excluded(journal: Journal) -> None:
    """Move back what the exclude patterns match from each target's previous content. Done
    again, from where it stopped, when a crash interrupted it."""
    excluded = exclude_matcher(journal.keep_excluded)
    for plan in journal.targets:
        previous = plan.aside_path if plan.method == BY_RENAME else plan.aside
        info = lstat(previous)
        if info is not None and stat.S_ISDIR(info.st_mode):
            _move_back_excluded(previous, plan.path, plan.in_archive, excluded, lambda: None)


def _move_back_excluded(previous: str, place: str, archive_path: str, excluded: Callable[[str], bool],
                        ensure_parent: Callable[[], None]) -> None:
    with opened_folder(previous) as fd:
        names = sorted(os.listdir(fd))
        folder_info = os.fstat(fd)

    def ensure_place() -> None:
        ensure_parent()
        ensure_folder_like(place, folder_info)

    for name in names:
        path_in_archive = f"{archive_path}/{name}"
        entry = lstat(os.path.join(previous, name))
        if entry is None:
            continue
        if excluded(path_in_archive):
            ensure_place()
            rename(os.path.join(previous, name), os.path.join(place, name))
        elif stat.S_ISDIR(entry.st_mode):
            _move_back_excluded(os.path.join(previous, name), os.path.join(place, name), path_in_archive,
                                excluded, ensure_place)
