"""Daemon against raw borg (or borgmatic) on the same data, in pairs that alternate which goes first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.borgmatic import Borgmatic
from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.page_cache import sync_and_evict, sync_and_warm
from bench.raw_borg import RawBorg
from bench.stats import median, timed
from bench.workspace import Workspace, remove_tree


@dataclass(frozen=True)
class Pair:
    """The daemon's time and the reference's (raw borg, or borgmatic) for the same work."""

    daemon_seconds: float
    reference_seconds: float
    daemon_first: bool

    @property
    def ratio(self) -> float:
        return self.daemon_seconds / self.reference_seconds


@dataclass
class PairedSeries:
    pairs: list[Pair] = field(default_factory=list)

    @property
    def daemon_median(self) -> float:
        return median([pair.daemon_seconds for pair in self.pairs])

    @property
    def reference_median(self) -> float:
        return median([pair.reference_seconds for pair in self.pairs])

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


def measure_pair(daemon: Contender, reference: Contender, daemon_first: bool, settle: Callable[[], None]) -> Pair:
    """Each side starts after `settle` has put the disk and the page cache in the same state."""
    if daemon_first:
        daemon_seconds = _time_after(settle, daemon)
        reference_seconds = _time_after(settle, reference)
    else:
        reference_seconds = _time_after(settle, reference)
        daemon_seconds = _time_after(settle, daemon)
    return Pair(daemon_seconds, reference_seconds, daemon_first)


def _time_after(settle: Callable[[], None], contender: Contender) -> float:
    contender.prepare()
    settle()
    seconds = timed(contender.run)[0]
    contender.clean_up()
    return seconds


def run_pairs(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, pairs: int,
              restores_per_pair: int = 1, on_pair_done: Callable[[int], None] = lambda index: None) -> PairedResults:
    results = PairedResults()
    for index in range(pairs):
        run_one_pair(workspace, daemon, raw, dataset, index, results, restores_per_pair)
        on_pair_done(index)
    return results


def run_one_pair(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, index: int,
                 results: PairedResults, restores: int = 1) -> None:
    """Fresh twin repositories; a full snapshot, an unchanged one, then restores of the last."""
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

    # The daemon answers a restore once the new content is in place and deletes the content it
    # replaced afterwards; raw borg's extraction is deleted right after its run. Each side's
    # deletion ends before the other side starts, so both leave the same files and memory behind.
    archive = daemon.call("status")["last_snapshot"]["name"]
    extraction = workspace.extraction(f"pair{index}")
    for restore in range(restores):
        results.restore.pairs.append(measure_pair(
            Contender(run=daemon.restore, clean_up=daemon.wait_for_restore_clean_up),
            Contender(run=lambda: raw.extract(daemon_repository, archive, extraction),
                      prepare=extraction.mkdir, clean_up=lambda: remove_tree(extraction)),
            daemon_first == (restore % 2 == 0), settle=lambda: sync_and_evict([daemon_repository]),
        ))
    for repository in (daemon_repository, raw_repository):
        remove_tree(repository)


@dataclass
class BorgmaticResults:
    version: str
    full_snapshot: PairedSeries = field(default_factory=PairedSeries)
    unchanged_snapshot: PairedSeries = field(default_factory=PairedSeries)


def run_borgmatic_pairs(workspace: Workspace, daemon: BenchDaemon, borgmatic: Borgmatic, dataset: Dataset,
                        pairs: int, on_pair_done: Callable[[int], None] = lambda index: None) -> BorgmaticResults:
    """The daemon against `borgmatic create` on twin repositories: a full snapshot, then an unchanged one."""
    results = BorgmaticResults(version=borgmatic.version())
    for index in range(pairs):
        daemon_first = index % 2 == 0
        daemon_repository = workspace.repository(f"daemon-borgmatic{index}")
        borgmatic_repository = workspace.repository(f"borgmatic{index}")
        config_path = workspace.root / f"borgmatic{index}.yaml"
        borgmatic.raw.init(borgmatic_repository)
        borgmatic.configure(config_path, borgmatic_repository, dataset.root)
        daemon.configure(daemon_repository, [dataset.root])
        for series in (results.full_snapshot, results.unchanged_snapshot):
            series.pairs.append(measure_pair(
                Contender(run=daemon.snapshot, prepare=daemon.wait_for_a_new_snapshot_name),
                Contender(run=lambda: borgmatic.create(config_path)),
                daemon_first, settle=lambda: sync_and_warm([dataset.root]),
            ))
        for repository in (daemon_repository, borgmatic_repository):
            remove_tree(repository)
        on_pair_done(index)
    return results
