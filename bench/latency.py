"""`status` round trips while a snapshot runs, from a client polling at a steady rate.

As a control, the same polling runs against the idle daemon while raw borg creates the same
archive beside it: what the two share is the machine's contention (borg, kernel writeback,
the clients on two cores), what differs is the daemon's own work during a job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backupctl.client import Client
from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.page_cache import sync_and_warm
from bench.raw_borg import RawBorg
from bench.stats import percentile
from bench.workspace import Workspace, remove_tree


@dataclass
class LatencySamples:
    seconds: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.seconds, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.seconds, 0.99)

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("nan"))


@dataclass
class LatencyFigures:
    poll_rate: float
    during_snapshot: LatencySamples = field(default_factory=LatencySamples)
    beside_raw_borg: LatencySamples = field(default_factory=LatencySamples)
    snapshots: int = 0


def measure_status_latency(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                           poll_rate: float, samples_wanted: int, runs_at_most: int) -> LatencyFigures:
    """Full snapshots into fresh repositories, each paired with a control run, until enough samples are in."""
    figures = LatencyFigures(poll_rate=poll_rate)
    while len(figures.during_snapshot.seconds) < samples_wanted and figures.snapshots < runs_at_most:
        run = figures.snapshots
        if run % 2 == 1:
            figures.beside_raw_borg.seconds += poll_during_raw_create(workspace, daemon, raw, dataset, poll_rate, run)
        figures.during_snapshot.seconds += poll_during_daemon_snapshot(workspace, daemon, dataset, poll_rate, run)
        if run % 2 == 0:
            figures.beside_raw_borg.seconds += poll_during_raw_create(workspace, daemon, raw, dataset, poll_rate, run)
        figures.snapshots += 1
    return figures


def poll_during_daemon_snapshot(workspace: Workspace, daemon: BenchDaemon, dataset: Dataset,
                                poll_rate: float, run: int) -> list[float]:
    repository = workspace.repository(f"latency-daemon{run}")
    daemon.configure(repository, [dataset.root])
    daemon.wait_for_a_new_snapshot_name()
    sync_and_warm([dataset.root])
    with daemon.client() as starter, daemon.client() as poller:
        job = starter.call("snapshot")
        samples = poll_status(poller, poll_rate, lambda overview: overview["state"] == "running")
        finished = poller.call("jobs", {"limit": 1})[0]
    if finished["id"] != job["id"]:
        raise RuntimeError(f"expected job {job['id']} to be the latest, found {finished['id']}")
    daemon.succeeded(finished)
    remove_tree(repository)
    return samples


def poll_during_raw_create(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                           poll_rate: float, run: int) -> list[float]:
    repository = workspace.repository(f"latency-raw{run}")
    raw.init(repository)
    failures: list[BaseException] = []

    def create() -> None:
        try:
            raw.create(repository, "latency", dataset.root)
        except BaseException as error:
            failures.append(error)

    creator = threading.Thread(target=create)
    sync_and_warm([dataset.root])
    with daemon.client() as poller:
        creator.start()
        samples = poll_status(poller, poll_rate, lambda overview: creator.is_alive())
    creator.join()
    if failures:
        raise failures[0]
    remove_tree(repository)
    return samples


def poll_status(client: Client, poll_rate: float, still_running: Callable[[dict[str, Any]], bool]) -> list[float]:
    """Round-trip seconds of each status call answered while still_running holds."""
    interval = 1.0 / poll_rate
    samples: list[float] = []
    next_poll = time.perf_counter()
    while True:
        started = time.perf_counter()
        overview = client.call("status")
        seconds = time.perf_counter() - started
        if not still_running(overview):
            return samples
        samples.append(seconds)
        next_poll += interval
        time.sleep(max(next_poll - time.perf_counter(), 0.0))
