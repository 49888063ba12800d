"""A job's progress as `records.Progress`, and the one estimate of percent and ETA that
snapshots and restores share: below 100 % until done, an ETA only once it means something,
work past what was expected said to be more than expected."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import trio

from backupctl.records import Progress
from backupd.borg.log_json import ArchiveProgress
from backupd.state import SnapshotSummary

# Before this long, or this share of the work, a rate says nothing about the rest: early reads
# of cached or small files would promise days or seconds.
ETA_AFTER_SECONDS = 3.0
ETA_AFTER_FRACTION = 0.02

_PROGRESS_FIELDS = frozenset(field.name for field in fields(Progress)) - {"absent", "extra"}


def progress_with(**given: Any) -> Progress:
    """Progress with exactly the fields given, a None among them sent as nil."""
    return Progress(**given, absent=_PROGRESS_FIELDS - given.keys())


@dataclass(frozen=True)
class Estimate:
    percent: float | None = None
    eta: float | None = None
    more_than_expected: bool = False


def estimate(done: int, expected: int | None, elapsed: float, finished: bool = False) -> Estimate:
    """Where done stands against expected after elapsed seconds. Work that is not finished
    stays below 100 %; work beyond what was expected has no percent and says so."""
    if finished:
        return Estimate(percent=100.0, eta=0.0)
    if not expected or done <= 0:
        return Estimate()
    if done >= expected:
        return Estimate(more_than_expected=done > expected)
    fraction = done / expected
    eta = None
    if elapsed >= ETA_AFTER_SECONDS and fraction >= ETA_AFTER_FRACTION:
        eta = round(elapsed * (1 - fraction) / fraction, 1)
    return Estimate(percent=min(round(fraction * 100, 1), 99.9), eta=eta)


class Estimator:
    """Progress of work measured against an expected amount, timed from when it is made."""

    def __init__(self, expected: int | None) -> None:
        self.expected = expected
        self.started = trio.current_time()

    def progress(self, done: int, finished: bool = False, **measured: Any) -> Progress:
        """The measured fields, then elapsed, percent, ETA and whether done passed what was expected."""
        elapsed = trio.current_time() - self.started
        guess = estimate(done, self.expected, elapsed, finished)
        return progress_with(**measured, elapsed=round(elapsed, 1), percent=guess.percent, eta=guess.eta,
                        more_than_expected=guess.more_than_expected)


class SnapshotProgress:
    """A snapshot's progress, measured against the previous snapshot's original size."""

    def __init__(self, expected_size: int | None) -> None:
        self.expected_size = expected_size or None
        self._estimator = Estimator(self.expected_size)
        self._files: int | None = 0
        self._original_size: int | None = 0
        self._deduplicated_size: int | None = 0
        self._path: str | None = None

    def update(self, event: ArchiveProgress) -> Progress:
        self._files, self._original_size = event.nfiles, event.original_size
        self._deduplicated_size = event.deduplicated_size
        self._path = event.path or self._path
        return self.current()

    def finished(self, summary: SnapshotSummary) -> Progress:
        self._files, self._original_size = summary.files, summary.original_size
        self._deduplicated_size, self._path = summary.deduplicated_size, None
        return self._progress(finished=True)

    def current(self) -> Progress:
        return self._progress(finished=False)

    def _progress(self, finished: bool) -> Progress:
        return self._estimator.progress(self._original_size or 0, finished, files=self._files,
                                        original_size=self._original_size,
                                        deduplicated_size=self._deduplicated_size, path=self._path,
                                        expected_size=self.expected_size)
