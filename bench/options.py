"""What one bench run measures: data size and seed, number of pairs, phase lengths, where the figures go."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from backupd.jobs import HISTORY_LIMIT

MB = 1_000_000
PASSPHRASE = "bench passphrase: correct horse battery staple"
ENCRYPTION = "repokey-blake2"
COMPRESSION = "lz4"
DEFAULT_SEED = 8


@dataclass(frozen=True)
class DatasetSize:
    total_bytes: int
    file_count: int


@dataclass(frozen=True)
class Preset:
    """The size of a run: its data, its pairs and how long each phase measures."""

    name: str
    dataset: DatasetSize
    pairs: int
    # The daemon at rest: its CPU time is counted over this many seconds.
    idle_seconds: float
    # One client polling status: calls wanted during snapshots, and how many snapshots at most.
    latency_samples_wanted: int
    latency_runs_at_most: int
    # Many clients calling status back to back: seconds against the idle daemon, snapshots under that load.
    concurrent_seconds: float
    concurrent_runs: int
    # `backupctl status` and `borg info --json` as whole processes: runs of each.
    process_runs: int
    # Restores are the noisiest pair (the file system's state after the previous one's deletions):
    # several per pair, alternating which side goes first.
    restores_per_pair: int = 1


SMOKE = Preset(
    name="smoke", dataset=DatasetSize(total_bytes=5 * MB, file_count=100), pairs=1, idle_seconds=1.0,
    latency_samples_wanted=40, latency_runs_at_most=1, concurrent_seconds=1.0, concurrent_runs=1, process_runs=3,
)
QUICK = Preset(
    name="quick", dataset=DatasetSize(total_bytes=50 * MB, file_count=500), pairs=3, idle_seconds=5.0,
    latency_samples_wanted=300, latency_runs_at_most=8, concurrent_seconds=3.0, concurrent_runs=1, process_runs=5,
)
DEFAULT = Preset(
    name="default", dataset=DatasetSize(total_bytes=500 * MB, file_count=5_000), pairs=5, idle_seconds=60.0,
    latency_samples_wanted=1_000, latency_runs_at_most=8, concurrent_seconds=3.0, concurrent_runs=2, process_runs=10,
    restores_per_pair=3,
)
LARGE = Preset(
    name="large", dataset=DatasetSize(total_bytes=2_000 * MB, file_count=20_000), pairs=3, idle_seconds=60.0,
    latency_samples_wanted=1_000, latency_runs_at_most=4, concurrent_seconds=3.0, concurrent_runs=2, process_runs=10,
    restores_per_pair=3,
)


@dataclass(frozen=True)
class ScaleSize:
    """The scale run: one snapshot and its restore of many small files, then a repository of many
    archives and a full job history."""

    files: int = 300_000
    archives: int = 10_000
    # Cheap real jobs (dry runs of a small snapshot) run to fill the history before it is paged.
    jobs: int = HISTORY_LIMIT
    mean_file_bytes: int = 1_000


@dataclass(frozen=True)
class BenchOptions:
    preset: Preset
    seed: int
    json_path: Path | None
    markdown_path: Path | None
    scale: ScaleSize | None = None
    status_poll_rate: float = 200.0
    concurrent_processes: int = 4
    concurrent_connections_per_process: int = 8

    @property
    def dataset(self) -> DatasetSize:
        return self.preset.dataset

    @property
    def pairs(self) -> int:
        return self.preset.pairs

    @property
    def concurrent_clients(self) -> int:
        return self.concurrent_processes * self.concurrent_connections_per_process


def parse_options(argv: list[str] | None = None) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure backupd against raw borg on the same data (DESIGN section 8 budgets).",
    )
    sizes = parser.add_mutually_exclusive_group()
    for preset, purpose in ((SMOKE, "checks that every phase runs, for the test suite"),
                            (QUICK, "checks that the bench works"),
                            (LARGE, "the large data set")):
        sizes.add_argument(f"--{preset.name}", dest="preset", action="store_const", const=preset,
                           help=f"{_describe(preset)}: {purpose}")
    sizes.add_argument("--scale", action="store_true",
                       help=f"the scale run: {ScaleSize().files:,} small files, then {ScaleSize().archives:,} "
                            f"archives and {ScaleSize().jobs} jobs in the history")
    parser.add_argument("--scale-files", type=_positive_int, metavar="N", help="files of the scale run")
    parser.add_argument("--scale-archives", type=_positive_int, metavar="N", help="archives of the scale run")
    parser.add_argument("--scale-jobs", type=_positive_int, metavar="N",
                        help="jobs run to fill the history in the scale run")
    parser.add_argument("--pairs", type=_positive_int, help="pairs of daemon and raw borg runs per measurement")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the data set's sizes and bytes (default {DEFAULT_SEED}): "
                             "the same seed writes the same files")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the figures' table to FILE")
    parser.set_defaults(preset=DEFAULT)
    parser.epilog = f"Without a size option: {_describe(DEFAULT)}."
    args = parser.parse_args(argv)
    preset: Preset = args.preset
    if args.pairs is not None:
        preset = replace(preset, pairs=args.pairs)
    scale = None
    if args.scale or args.scale_files or args.scale_archives or args.scale_jobs:
        if args.preset is not DEFAULT:
            parser.error("the scale options go alone, without another size")
        defaults = ScaleSize()
        scale = ScaleSize(files=args.scale_files or defaults.files, archives=args.scale_archives or defaults.archives,
                          jobs=args.scale_jobs or defaults.jobs)
    return BenchOptions(preset=preset, seed=args.seed, json_path=args.json, markdown_path=args.markdown, scale=scale)


def _describe(preset: Preset) -> str:
    dataset = preset.dataset
    return (f"{dataset.total_bytes // MB:,} MB in {dataset.file_count:,} files, {preset.pairs} pair(s), "
            f"idle daemon watched {preset.idle_seconds:.0f} s")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
