"""A restore's progress: files and bytes extracted against the snapshot's totals."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
import trio

from backupctl.records import Progress
from backupd.borg.log_json import ListedItem
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
        self._extracting: str | None = None
        self._last_item: ListedItem | None = None

    def begin_group(self, staging_fd: int) -> None:
        self._staging_fd = staging_fd

    def item_extracted(self, item: ListedItem) -> None:
        self._count_extracted()
        self._extracting = item.path
        self._last_item = item

    def group_done(self) -> None:
        self._count_extracted()
        self._staging_fd = None

    def _count_extracted(self) -> None:
        staged = self._staged(self._extracting)
        self._extracting = None
        if staged is not None and stat.S_ISREG(staged.st_mode):
            self.files_seen += 1
            self.done_size += staged.st_size

    def _staged(self, path: str | None) -> os.stat_result | None:
        if path is None or self._staging_fd is None:
            return None
        try:
            return os.stat(path, dir_fd=self._staging_fd, follow_symlinks=False)
        except (OSError, ValueError):
            return None

    def current(self, finished: bool = False, step: str | None = None) -> Progress:
        """Files and bytes so far; with a step (swapping, done) when the restore names one."""
        in_progress = self._staged(self._extracting)
        partial_size = in_progress.st_size if in_progress is not None and stat.S_ISREG(in_progress.st_mode) else 0
        done_size = _at_most(self.done_size + partial_size, self.total_size)
        named_step = {"step": step} if step is not None else {}
        return self._estimator.progress(
            done_size, finished, files=_at_most(self.files_seen, self.total_files), total_files=self.total_files,
            original_size=done_size, total_size=self.total_size,
            path=self.place_of(self._last_item.message) if self._last_item else None, **named_step)


def _at_most(value: int, total: int | None) -> int:
    return min(value, total) if total is not None else value
