"""`status` round trips from one client polling at a steady rate: against the idle daemon, and while snapshots run."""

from __future__ import annotations

import time
from collections.abc import Callable

from backupctl.client import Client
from bench.background import BackgroundSnapshot, SnapshotComparison, compare_under_snapshots
from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.raw_borg import RawBorg
from bench.samples import LatencySamples, wall_clock_offset
from bench.workspace import Workspace


def measure_one_client_idle(daemon: BenchDaemon, poll_rate: float, samples_wanted: int) -> LatencySamples:
    """As many calls as during the snapshots, with nothing else running."""
    deadline = time.perf_counter() + samples_wanted / poll_rate
    with daemon.client() as poller:
        return poll_status(poller, poll_rate, lambda: time.perf_counter() < deadline)


def measure_one_client_during_snapshots(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                                        poll_rate: float, samples_wanted: int, runs_at_most: int
                                        ) -> SnapshotComparison:
    """Full snapshots into fresh repositories, each paired with a raw borg control, until enough calls are in."""

    def poll_while_running(background: BackgroundSnapshot) -> LatencySamples:
        with daemon.client() as poller:
            background.start()
            return poll_status(poller, poll_rate, background.running)

    return compare_under_snapshots(workspace, daemon, raw, dataset, "one-client", poll_while_running,
                                   runs_at_most=runs_at_most, samples_wanted=samples_wanted)


def poll_status(client: Client, poll_rate: float, keep_polling: Callable[[], bool]) -> LatencySamples:
    """Round trips of status calls at poll_rate a second, while keep_polling holds."""
    interval = 1.0 / poll_rate
    offset = wall_clock_offset()
    samples = LatencySamples()
    next_poll = time.perf_counter()
    while keep_polling():
        started = time.perf_counter()
        client.call("status")
        samples.add(started + offset, time.perf_counter() - started)
        next_poll += interval
        time.sleep(max(next_poll - time.perf_counter(), 0.0))
    return samples
