"""What one bench run measures: data size, number of pairs, where the figures go."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000
PASSPHRASE = "bench passphrase: correct horse battery staple"
ENCRYPTION = "repokey-blake2"
COMPRESSION = "lz4"


@dataclass(frozen=True)
class DatasetSize:
    total_bytes: int
    file_count: int


FULL_DATASET = DatasetSize(total_bytes=480 * MB, file_count=5_000)
QUICK_DATASET = DatasetSize(total_bytes=48 * MB, file_count=500)
FULL_PAIRS = 5
QUICK_PAIRS = 3
FULL_LATENCY_SAMPLES = 1_000
QUICK_LATENCY_SAMPLES = 300


@dataclass(frozen=True)
class BenchOptions:
    dataset: DatasetSize
    pairs: int
    json_path: Path | None
    latency_samples_wanted: int
    status_poll_rate: float = 200.0
    latency_runs_at_most: int = 8
    throughput_processes: int = 4
    throughput_connections_per_process: int = 8
    throughput_seconds: float = 3.0
    idle_seconds: float = 5.0


def parse_options(argv: list[str] | None = None) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure backupd against raw borg on the same data (DESIGN section 8 budgets).",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"small data ({QUICK_DATASET.total_bytes // MB} MB, {QUICK_DATASET.file_count} files) "
                             f"and {QUICK_PAIRS} pairs: checks that the bench works")
    parser.add_argument("--pairs", type=_positive_int, help="pairs of daemon and raw borg runs per measurement")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    default_pairs = QUICK_PAIRS if args.quick else FULL_PAIRS
    return BenchOptions(
        dataset=QUICK_DATASET if args.quick else FULL_DATASET,
        pairs=args.pairs or default_pairs,
        json_path=args.json,
        latency_samples_wanted=QUICK_LATENCY_SAMPLES if args.quick else FULL_LATENCY_SAMPLES,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
