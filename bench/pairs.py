"""Daemon against raw borg on the same data, in pairs that alternate which goes first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.page_cache import sync_and_evict, sync_and_warm
from bench.raw_borg import RawBorg
from bench.stats import median, timed
from bench.workspace import Workspace, remove_tree


@dataclass(frozen=True)
class Pair:
    daemon_seconds: float
    raw_seconds: float
    daemon_first: bool

    @property
    def ratio(self) -> float:
        return self.daemon_seconds / self.raw_seconds


@dataclass
class PairedSeries:
    pairs: list[Pair] = field(default_factory=list)

    @property
    def daemon_median(self) -> float:
        return median([pair.daemon_seconds for pair in self.pairs])

    @property
    def raw_median(self) -> float:
        return median([pair.raw_seconds for pair in self.pairs])

    @property
    def ratio_median(self) -> float:
        """The median of the per-pair ratios: drift between pairs cancels out."""
        return median([pair.ratio for pair in self.pairs])


@dataclass
class PairedResults:
    full_snapshot: PairedSeries = field(default_factory=PairedSeries)
    unchanged_snapshot: PairedSeries = field(default_factory=PairedSeries)
    restore: PairedSeries = field(default_factory=PairedSeries)


@dataclass(frozen=True)
class Contender:
    """One side of a pair: an untimed preparation, the timed run, an untimed clean-up."""

    run: Callable[[], object]
    prepare: Callable[[], None] = lambda: None
    clean_up: Callable[[], None] = lambda: None


def measure_pair(daemon: Contender, raw: Contender, daemon_first: bool, settle: Callable[[], None]) -> Pair:
    """Each side starts after `settle` has put the disk and the page cache in the same state."""
    if daemon_first:
        daemon_seconds = _time_after(settle, daemon)
        raw_seconds = _time_after(settle, raw)
    else:
        raw_seconds = _time_after(settle, raw)
        daemon_seconds = _time_after(settle, daemon)
    return Pair(daemon_seconds, raw_seconds, daemon_first)


def _time_after(settle: Callable[[], None], contender: Contender) -> float:
    contender.prepare()
    settle()
    seconds = timed(contender.run)[0]
    contender.clean_up()
    return seconds


def run_pairs(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, pairs: int,
              on_pair_done: Callable[[int], None] = lambda index: None) -> PairedResults:
    results = PairedResults()
    for index in range(pairs):
        run_one_pair(workspace, daemon, raw, dataset, index, results)
        on_pair_done(index)
    return results


def run_one_pair(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, index: int,
                 results: PairedResults) -> None:
    """Fresh twin repositories; a full snapshot, an unchanged one, then a restore of the last."""
    daemon_first = index % 2 == 0
    daemon_repository = workspace.repository(f"daemon-pair{index}")
    raw_repository = workspace.repository(f"raw-pair{index}")
    raw.init(raw_repository)
    daemon.configure(daemon_repository, [dataset.root])

    def snapshot_pair(archive: str) -> Pair:
        return measure_pair(
            Contender(run=daemon.snapshot, prepare=daemon.wait_for_a_new_snapshot_name),
            Contender(run=lambda: raw.create(raw_repository, archive, dataset.root)),
            daemon_first, settle=lambda: sync_and_warm([dataset.root]),
        )

    results.full_snapshot.pairs.append(snapshot_pair(f"pair{index}-full"))
    results.unchanged_snapshot.pairs.append(snapshot_pair(f"pair{index}-unchanged"))

    # The daemon's restore ends by deleting the content it replaced; raw borg's extraction
    # is deleted right after its run, so both sides leave the same files and memory behind.
    archive = daemon.call("status")["last_snapshot"]["name"]
    extraction = workspace.extraction(f"pair{index}")
    results.restore.pairs.append(measure_pair(
        Contender(run=daemon.restore),
        Contender(run=lambda: raw.extract(daemon_repository, archive, extraction),
                  prepare=extraction.mkdir, clean_up=lambda: remove_tree(extraction)),
        daemon_first, settle=lambda: sync_and_evict([daemon_repository]),
    ))
    for repository in (daemon_repository, raw_repository):
        remove_tree(repository)
