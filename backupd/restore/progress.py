"""A restore's progress: files and bytes extracted against the snapshot's totals."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
import trio

from backupctl.records import Progress
from backupd.borg.log_json import ListedItem, ListedItems
from backupd.jobs import ReportProgress
from backupd.progress import Estimator

PROGRESS_INTERVAL = 0.25


async def report_written(progress: RestoreProgress, report: ReportProgress) -> None:
    """Every PROGRESS_INTERVAL, what borg has extracted so far."""
    while True:
        report(progress.current())
        await trio.sleep(PROGRESS_INTERVAL)


class RestoreProgress:
    """Files and bytes extracted against the snapshot's totals, with percent and ETA.

    What counts is what the overview counts: regular files and their sizes, measured on the
    staged copies (borg names an item as it starts extracting it), never beyond the totals."""

    def __init__(self, total_size: int | None, total_files: int | None,
                 place_of: Callable[[str], str] = lambda archive_path: "/" + archive_path) -> None:
        self.total_size = total_size
        self.place_of = place_of
        self.total_files = total_files
        self._estimator = Estimator(total_size)
        self.done_size = 0
        self.files_seen = 0
        self._staging_fd: int | None = None
        self._extracting: bytes | None = None
        self._last_item: ListedItem | None = None

    def begin_group(self, staging_fd: int) -> None:
        self._staging_fd = staging_fd

    def items_extracted(self, items: ListedItems) -> None:
        """borg names an item as it begins to extract it, so the one named before is whole."""
        for path in items.paths():
            self._count_extracted()
            self._extracting = path
        self._last_item = items.last

    def group_done(self) -> None:
        self._count_extracted()
        self._staging_fd = None

    def _count_extracted(self) -> None:
        size = self._staged_file_size(self._extracting)
        self._extracting = None
        if size is not None:
            self.files_seen += 1
            self.done_size += size

    def _staged_file_size(self, path: bytes | None) -> int | None:
        """The size of a regular file at the path in the staging folder; None for anything else."""
        if path is None or self._staging_fd is None:
            return None
        try:
            staged = os.stat(path, dir_fd=self._staging_fd, follow_symlinks=False)
        except (OSError, ValueError):
            return None
        return staged.st_size if stat.S_ISREG(staged.st_mode) else None

    def current(self, finished: bool = False, step: str | None = None) -> Progress:
        """Files and bytes so far; with a step (swapping, done) when the restore names one."""
        done_size = _at_most(self.done_size + (self._staged_file_size(self._extracting) or 0), self.total_size)
        named_step = {"step": step} if step is not None else {}
        return self._estimator.progress(
            done_size, finished, files=_at_most(self.files_seen, self.total_files), total_files=self.total_files,
            original_size=done_size, total_size=self.total_size,
            path=self.place_of(self._last_item.message) if self._last_item else None, **named_step)


def _at_most(value: int, total: int | None) -> int:
    return min(value, total) if total is not None else value
