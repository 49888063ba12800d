"""A full snapshot running on a thread while status is measured: the daemon's job, or raw borg beside the idle daemon.

Raw borg is the control: the machine is as busy (borg, kernel writeback), but the daemon has
no job to run, so what differs between the two is the daemon's own work during a job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.page_cache import sync_and_warm
from bench.raw_borg import RawBorg
from bench.samples import LatencySamples, LoadSamples, Window
from bench.workspace import Workspace, remove_tree


@dataclass
class BackgroundSnapshot:
    """Started by `start`; `finish` waits for it and gives the window it ran in."""

    snapshot: Callable[[], Window]
    clean_up: Callable[[], None]
    window: Window | None = None
    failure: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="background snapshot")
        self.thread.start()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def finish(self) -> Window:
        if self.thread is not None:
            self.thread.join()
        self.clean_up()
        if self.failure is not None:
            raise self.failure
        if self.window is None:
            raise RuntimeError("the background snapshot did not run")
        return self.window

    def _run(self) -> None:
        try:
            self.window = self.snapshot()
        except BaseException as error:
            self.failure = error


def daemon_snapshot(workspace: Workspace, daemon: BenchDaemon, dataset: Dataset, name: str) -> BackgroundSnapshot:
    """The daemon's full snapshot into a fresh repository, over the window its job record gives."""
    repository = workspace.repository(name)
    daemon.configure(repository, [dataset.root])
    daemon.wait_for_a_new_snapshot_name()
    sync_and_warm([dataset.root])

    def snapshot() -> Window:
        job = daemon.snapshot()
        return Window(job["started"], job["finished"])

    return BackgroundSnapshot(snapshot=snapshot, clean_up=lambda: remove_tree(repository))


def raw_borg_snapshot(workspace: Workspace, raw: RawBorg, dataset: Dataset, name: str) -> BackgroundSnapshot:
    """Raw `borg create` of the same data into a fresh repository, beside the idle daemon."""
    repository = workspace.repository(name)
    raw.init(repository)
    sync_and_warm([dataset.root])

    def snapshot() -> Window:
        started = time.time()
        raw.create(repository, name, dataset.root)
        return Window(started, time.time())

    return BackgroundSnapshot(snapshot=snapshot, clean_up=lambda: remove_tree(repository))


@dataclass
class SnapshotComparison:
    """Status calls during the daemon's snapshots, and the same beside raw borg creating the same archive."""

    during_snapshot: LoadSamples = field(default_factory=LoadSamples)
    beside_raw_borg: LoadSamples = field(default_factory=LoadSamples)
    snapshots: int = 0


# Starts the snapshot, measures status calls until it no longer runs; all the calls it timed.
Measure = Callable[[BackgroundSnapshot], LatencySamples]


def compare_under_snapshots(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, name: str,
                            measure: Measure, runs_at_most: int, samples_wanted: int | None = None
                            ) -> SnapshotComparison:
    """A daemon snapshot and a raw borg control per run, alternating which goes first, until
    samples_wanted calls are in during the daemon's snapshots, or after runs_at_most runs."""
    comparison = SnapshotComparison()

    def wanted_more() -> bool:
        if comparison.snapshots >= runs_at_most:
            return False
        return samples_wanted is None or comparison.during_snapshot.samples.count < samples_wanted

    while comparison.snapshots < 1 or wanted_more():
        run = comparison.snapshots
        daemon_side = (comparison.during_snapshot,
                       lambda: daemon_snapshot(workspace, daemon, dataset, f"{name}-daemon{run}"))
        raw_side = (comparison.beside_raw_borg,
                    lambda: raw_borg_snapshot(workspace, raw, dataset, f"{name}-raw{run}"))
        for into, prepare in (daemon_side, raw_side) if run % 2 == 0 else (raw_side, daemon_side):
            background = prepare()
            try:
                samples = measure(background)
            finally:
                window = background.finish()
            into.add(samples, window)
        comparison.snapshots += 1
    return comparison
