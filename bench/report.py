"""The figures of one run: one line per budget with PASS or FAIL, the medians, and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.dataset import Dataset
from bench.idle import IdleFigures
from bench.latency import LatencyFigures, LatencySamples
from bench.options import MB
from bench.pairs import PairedResults, PairedSeries
from bench.throughput import ThroughputFigures

MIB = 1024 * 1024
FULL_SNAPSHOT_RATIO = 1.05
UNCHANGED_SNAPSHOT_RATIO = 1.10
STATUS_P99_SECONDS = 0.002
STATUS_CALLS_PER_SECOND = 5_000
IDLE_RESIDENT_BYTES = 40 * MIB
# "No CPU": one tick of rounding is allowed, not a timer that wakes up.
IDLE_CPU_TICKS = 1
RESTORE_RATIO = 1.10


@dataclass(frozen=True)
class BenchFigures:
    dataset: Dataset
    pair_count: int
    pairs: PairedResults
    latency: LatencyFigures
    throughput: ThroughputFigures
    idle: IdleFigures
    resident_bytes_at_end: int
    borg_version: str
    wall_seconds: float
    cpu_count: int
    load_average_at_start: float


@dataclass(frozen=True)
class BudgetLine:
    name: str
    measured: str
    budget: str
    passed: bool
    details: str


def budget_lines(figures: BenchFigures) -> list[BudgetLine]:
    pairs, latency, throughput, idle = figures.pairs, figures.latency, figures.throughput, figures.idle
    return [
        _ratio_line("full snapshot of new data", pairs.full_snapshot, FULL_SNAPSHOT_RATIO),
        _ratio_line("snapshot of unchanged data", pairs.unchanged_snapshot, UNCHANGED_SNAPSHOT_RATIO),
        _latency_line(latency),
        BudgetLine(
            f"status throughput, {throughput.connections} clients",
            f"{throughput.calls_per_second:,.0f}/s", f">= {STATUS_CALLS_PER_SECOND:,}/s",
            throughput.calls_per_second >= STATUS_CALLS_PER_SECOND,
            f"{len(throughput.workers)} processes x {throughput.connections_per_process} connections, "
            f"{throughput.calls:,} calls in {throughput.seconds:.0f} s",
        ),
        BudgetLine(
            "idle daemon: resident memory",
            f"{idle.resident_bytes / MIB:.1f} MiB", f"<= {IDLE_RESIDENT_BYTES // MIB} MiB",
            idle.resident_bytes <= IDLE_RESIDENT_BYTES,
            f"after start, configure, one snapshot; {figures.resident_bytes_at_end / MIB:.1f} MiB after the whole bench",
        ),
        BudgetLine(
            f"idle daemon: CPU in {idle.seconds:.0f} s",
            f"{idle.cpu_ticks} ticks", f"<= {IDLE_CPU_TICKS} tick",
            idle.cpu_ticks <= IDLE_CPU_TICKS,
            f"utime+stime, {idle.ticks_per_second} ticks/s",
        ),
        _ratio_line("restore of a snapshot", pairs.restore, RESTORE_RATIO),
    ]


def render(figures: BenchFigures) -> str:
    dataset = figures.dataset
    lines = [
        f"backupd bench: {dataset.total_bytes / MB:.0f} MB in {dataset.file_count:,} files of random bytes, "
        f"{figures.pair_count} pairs, borg {figures.borg_version}; {figures.cpu_count} cores, "
        f"load average {figures.load_average_at_start:.2f} at start",
        "",
        f"{'budget':<38} {'measured':>12}  {'budget':<14} {'result':<6} details",
    ]
    for line in budget_lines(figures):
        verdict = "PASS" if line.passed else "FAIL"
        lines.append(f"{line.name:<38} {line.measured:>12}  {line.budget:<14} {verdict:<6} {line.details}")
    lines += ["", "per pair (daemon s / raw s, * = daemon first):"]
    for name, series in _series(figures.pairs):
        cells = "  ".join(
            f"{pair.daemon_seconds:.3f}/{pair.raw_seconds:.3f}{'*' if pair.daemon_first else ''}"
            for pair in series.pairs
        )
        lines.append(f"  {name:<20} {cells}")
    lines += [
        "",
        "snapshots start with the data in the page cache, restores with the repository out of it;",
        "ratios are medians of the per-pair ratios",
        f"bench wall time {figures.wall_seconds:.0f} s",
    ]
    return "\n".join(lines)


def write_json(path: Path, figures: BenchFigures) -> None:
    document: dict[str, Any] = {
        "dataset": {"total_bytes": figures.dataset.total_bytes, "file_count": figures.dataset.file_count},
        "pair_count": figures.pair_count,
        "borg_version": figures.borg_version,
        "wall_seconds": figures.wall_seconds,
        "cpu_count": figures.cpu_count,
        "load_average_at_start": figures.load_average_at_start,
        "budgets": [asdict(line) for line in budget_lines(figures)],
        "pairs": {name: _series_document(series) for name, series in _series(figures.pairs)},
        "status_latency": {
            "poll_rate": figures.latency.poll_rate, "snapshots": figures.latency.snapshots,
            "during_snapshot": _latency_document(figures.latency.during_snapshot),
            "beside_raw_borg_create": _latency_document(figures.latency.beside_raw_borg),
        },
        "status_throughput": {
            "calls_per_second": figures.throughput.calls_per_second, "calls": figures.throughput.calls,
            "connections": figures.throughput.connections, "processes": len(figures.throughput.workers),
            "seconds": figures.throughput.seconds,
        },
        "idle": asdict(figures.idle) | {"resident_bytes_at_end": figures.resident_bytes_at_end},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _ratio_line(name: str, series: PairedSeries, budget: float) -> BudgetLine:
    ratio = series.ratio_median
    return BudgetLine(
        name, f"{ratio:.3f} x", f"<= {budget:.2f} x", not math.isnan(ratio) and ratio <= budget,
        f"median daemon {series.daemon_median:.3f} s, raw borg {series.raw_median:.3f} s",
    )


def _latency_line(latency: LatencyFigures) -> BudgetLine:
    during, control = latency.during_snapshot, latency.beside_raw_borg
    return BudgetLine(
        "status round trip during a snapshot",
        f"p99 {_ms(during.p99)}", f"p99 <= {_ms(STATUS_P99_SECONDS)}",
        during.p99 <= STATUS_P99_SECONDS,
        f"p50 {_ms(during.p50)}, max {_ms(during.worst)}; {len(during.seconds)} calls at {latency.poll_rate:.0f}/s "
        f"over {latency.snapshots} snapshot(s); control, idle daemon beside raw borg create: "
        f"p50 {_ms(control.p50)}, p99 {_ms(control.p99)}, max {_ms(control.worst)}",
    )


def _series(pairs: PairedResults) -> list[tuple[str, PairedSeries]]:
    return [("full snapshot", pairs.full_snapshot), ("unchanged snapshot", pairs.unchanged_snapshot),
            ("restore", pairs.restore)]


def _series_document(series: PairedSeries) -> dict[str, Any]:
    return {
        "ratio_median": series.ratio_median,
        "daemon_median_seconds": series.daemon_median,
        "raw_median_seconds": series.raw_median,
        "pairs": [asdict(pair) | {"ratio": pair.ratio} for pair in series.pairs],
    }


def _latency_document(samples: LatencySamples) -> dict[str, Any]:
    return {"p50_seconds": samples.p50, "p99_seconds": samples.p99, "max_seconds": samples.worst,
            "calls": len(samples.seconds)}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
