"""The figures of one run as a Markdown table (figure, daemon, reference, ratio, budget, within budget),
with the machine, the date and notes around it; the same as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.background import SnapshotComparison
from bench.dataset import Dataset
from bench.figures import MIB, Budget, Figure, Limit, Unit
from bench.idle import IdleFigures
from bench.machine import Machine
from bench.options import MB, Preset
from bench.pairs import BorgmaticResults, PairedResults, PairedSeries
from bench.samples import LatencySamples, LoadSamples
from bench.status_process import ProcessTimes
from bench.throughput import ClientSpread

FULL_SNAPSHOT_RATIO = 1.05
UNCHANGED_SNAPSHOT_RATIO = 1.10
RESTORE_RATIO = 1.10
STATUS_P99_SECONDS = 0.002
STATUS_CALLS_PER_SECOND = 5_000
IDLE_RESIDENT_BYTES = 40 * MIB
# "No CPU": one tick of rounding is allowed, not a timer that wakes up.
IDLE_CPU_TICKS = 1
SIZES_FOR_CHECKING_ONLY = ("smoke", "quick")
COLUMNS = ("figure", "daemon", "reference", "ratio", "budget", "within budget")


@dataclass(frozen=True)
class StatusFigures:
    poll_rate: float
    spread: ClientSpread
    one_client_idle: LatencySamples
    one_client: SnapshotComparison
    many_clients_idle: LoadSamples
    many_clients: SnapshotComparison


@dataclass(frozen=True)
class BenchFigures:
    machine: Machine
    preset: Preset
    dataset: Dataset
    compressed_fraction: float
    pair_count: int
    pairs: PairedResults
    borgmatic: BorgmaticResults | None
    status: StatusFigures
    processes: ProcessTimes
    idle: IdleFigures
    resident_bytes_at_end: int
    wall_seconds: float


def figures_of(bench: BenchFigures) -> list[Figure]:
    return [*_snapshot_figures(bench), *_status_figures(bench.status), *_resource_figures(bench)]


def _snapshot_figures(bench: BenchFigures) -> list[Figure]:
    pairs = bench.pairs
    figures = [
        _paired("full_snapshot", "full snapshot of new data", pairs.full_snapshot, "raw borg",
                Budget(Limit.RATIO_AT_MOST, FULL_SNAPSHOT_RATIO)),
        _paired("unchanged_snapshot", "snapshot of unchanged data", pairs.unchanged_snapshot, "raw borg",
                Budget(Limit.RATIO_AT_MOST, UNCHANGED_SNAPSHOT_RATIO)),
        _paired("restore", "restore of a snapshot", pairs.restore, "raw borg extract",
                Budget(Limit.RATIO_AT_MOST, RESTORE_RATIO)),
    ]
    if bench.borgmatic is not None:
        figures += [
            _paired("borgmatic_full_snapshot", "full snapshot of new data, against borgmatic",
                    bench.borgmatic.full_snapshot, "borgmatic create"),
            _paired("borgmatic_unchanged_snapshot", "snapshot of unchanged data, against borgmatic",
                    bench.borgmatic.unchanged_snapshot, "borgmatic create"),
        ]
    return figures


def _paired(key: str, name: str, series: PairedSeries, reference_name: str, budget: Budget | None = None) -> Figure:
    return Figure(key, name, Unit.SECONDS, series.daemon_median, series.reference_median, reference_name, budget,
                  ratio_of_pairs=series.ratio_median)


def _status_figures(status: StatusFigures) -> list[Figure]:
    rate, clients = f"{status.poll_rate:.0f}/s", status.spread.connections
    one, many = status.one_client, status.many_clients
    beside = "beside raw borg"
    during_one = f"status, 1 client polling {rate}, during a snapshot"
    during_many = f"status, {clients} clients, during a snapshot"
    idle_one = f"status, 1 client polling {rate}, idle"
    idle_many = f"status, {clients} clients, idle"
    return [
        *_percentiles("status_one_client_snapshot", during_one, one.during_snapshot.samples,
                      one.beside_raw_borg.samples, beside,
                      p99_budget=Budget(Limit.AT_MOST, STATUS_P99_SECONDS)),
        *_percentiles("status_one_client_idle", idle_one, status.one_client_idle),
        Figure("status_many_clients_idle_calls_per_second", f"{idle_many}: calls per second", Unit.CALLS_PER_SECOND,
               status.many_clients_idle.calls_per_second,
               budget=Budget(Limit.AT_LEAST, STATUS_CALLS_PER_SECOND)),
        *_percentiles("status_many_clients_idle", idle_many, status.many_clients_idle.samples),
        Figure("status_many_clients_snapshot_calls_per_second", f"{during_many}: calls per second",
               Unit.CALLS_PER_SECOND, many.during_snapshot.calls_per_second,
               many.beside_raw_borg.calls_per_second, beside),
        *_percentiles("status_many_clients_snapshot", during_many, many.during_snapshot.samples,
                      many.beside_raw_borg.samples, beside),
    ]


def _percentiles(key: str, name: str, samples: LatencySamples, reference: LatencySamples | None = None,
                 reference_name: str | None = None, p99_budget: Budget | None = None) -> list[Figure]:
    def figure(suffix: str, daemon: float, control: float | None, budget: Budget | None = None) -> Figure:
        return Figure(f"{key}_{suffix}", f"{name}: {suffix}", Unit.LATENCY_SECONDS, daemon, control,
                      reference_name if control is not None else None, budget)

    return [
        figure("p50", samples.p50, reference.p50 if reference else None),
        figure("p99", samples.p99, reference.p99 if reference else None, p99_budget),
        figure("max", samples.worst, reference.worst if reference else None),
    ]


def _resource_figures(bench: BenchFigures) -> list[Figure]:
    idle, processes = bench.idle, bench.processes
    return [
        Figure("idle_resident_memory", "idle daemon: resident memory", Unit.BYTES, idle.resident_bytes,
               budget=Budget(Limit.AT_MOST, IDLE_RESIDENT_BYTES)),
        Figure("idle_cpu", f"idle daemon: CPU time over {idle.seconds:.0f} s", Unit.CLOCK_TICKS, idle.cpu_ticks,
               budget=Budget(Limit.AT_MOST, IDLE_CPU_TICKS)),
        Figure("resident_memory_at_end", "daemon resident memory after the whole bench", Unit.BYTES,
               bench.resident_bytes_at_end),
        Figure("backupctl_status_process",
               f"`backupctl status`, whole process, median of {len(processes.backupctl_status)}", Unit.SECONDS,
               processes.backupctl_median, processes.borg_info_median, "borg info --json"),
    ]


def markdown_table(figures: list[Figure]) -> str:
    rows = [COLUMNS, tuple("---" for _ in COLUMNS), *(figure.cells() for figure in figures)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def title(bench: BenchFigures) -> str:
    dataset = bench.dataset
    return (f"backupd bench, {bench.preset.name} run: {dataset.total_bytes / MB:,.0f} MB in {dataset.file_count:,} "
            f"files (seed {dataset.seed}), {dataset.random_bytes / dataset.total_bytes:.0%} random bytes and "
            f"{dataset.text_bytes / dataset.total_bytes:.0%} text, lz4 keeps {bench.compressed_fraction:.0%} of it; "
            f"{bench.pair_count} pair(s), {bench.preset.restores_per_pair} restore pair(s) in each")


def notes(bench: BenchFigures) -> list[str]:
    status = bench.status
    one, many = status.one_client, status.many_clients
    spread = status.spread
    lines = [
        "Snapshots start with the data in the page cache, restores with the repository out of it; each pair "
        "alternates which side goes first; their ratio is the median of the per-pair ratios.",
        "raw borg: the same borg command run directly on a twin repository. beside raw borg: the idle daemon "
        "while raw `borg create` of the same data runs, the same load on the machine without a job in the daemon.",
        f"status, 1 client: {one.during_snapshot.samples.count:,} calls during {one.snapshots} snapshot(s), "
        f"{one.beside_raw_borg.samples.count:,} beside raw borg, {status.one_client_idle.count:,} idle. "
        f"{spread.connections} clients ({spread.processes} processes x {spread.connections_per_process} "
        f"connections, one call in flight each): {many.during_snapshot.samples.count:,} calls in "
        f"{many.during_snapshot.seconds:.1f} s of {many.snapshots} snapshot(s), "
        f"{many.beside_raw_borg.samples.count:,} in {many.beside_raw_borg.seconds:.1f} s beside raw borg, "
        f"{status.many_clients_idle.samples.count:,} in {status.many_clients_idle.seconds:.1f} s idle.",
        f"Idle daemon: after start, configure and one snapshot; CPU is utime+stime at "
        f"{bench.idle.ticks_per_second} ticks/s.",
        f"`backupctl status` is `python -m backupctl.cli --socket S status`; `borg info --json` reads the same "
        f"repository with a warm cache; {len(bench.processes.borg_info)} runs each, medians.",
    ]
    if bench.preset.name in SIZES_FOR_CHECKING_ONLY:
        lines.append(f"The budgets are set for the default data set; a {bench.preset.name} run shows that every phase "
                     "works, its small samples and short runs judge nothing.")
    if bench.borgmatic is None:
        lines.append("borgmatic: not installed, its figures are left out.")
    else:
        lines.append(f"borgmatic: {bench.borgmatic.version}, `borgmatic create` on a twin repository.")
    return lines


def render(bench: BenchFigures) -> str:
    lines = [f"## {title(bench)}", "", bench.machine.describe(), "", markdown_table(figures_of(bench))]
    lines += [f"- {note}" for note in notes(bench)]
    lines += ["", "Per pair (daemon s / reference s, * = daemon first):", ""]
    for name, series in _series(bench):
        cells = "  ".join(
            f"{pair.daemon_seconds:.3f}/{pair.reference_seconds:.3f}{'*' if pair.daemon_first else ''}"
            for pair in series.pairs
        )
        lines.append(f"    {name:<32} {cells}")
    lines += ["", f"Bench wall time {bench.wall_seconds:.0f} s."]
    return "\n".join(lines)


def write_markdown(path: Path, bench: BenchFigures) -> None:
    path.write_text(markdown_table(figures_of(bench)), encoding="utf-8")


def write_json(path: Path, bench: BenchFigures) -> None:
    dataset, status = bench.dataset, bench.status
    document: dict[str, Any] = {
        "title": title(bench),
        "machine": asdict(bench.machine) | {"described": bench.machine.describe()},
        "run": {
            "preset": bench.preset.name, "pair_count": bench.pair_count, "seed": dataset.seed,
            "dataset": {"total_bytes": dataset.total_bytes, "file_count": dataset.file_count,
                        "text_bytes": dataset.text_bytes, "random_bytes": dataset.random_bytes,
                        "lz4_compressed_fraction": bench.compressed_fraction},
            "status_poll_rate": status.poll_rate, "status_clients": asdict(status.spread),
            "wall_seconds": bench.wall_seconds,
        },
        "figures": [figure.document() for figure in figures_of(bench)],
        "notes": notes(bench),
        "pairs": {name: _series_document(series) for name, series in _series(bench)},
        "borgmatic": None if bench.borgmatic is None else {"version": bench.borgmatic.version},
        "status_calls": {
            "one_client_during_snapshot": _load_document(status.one_client.during_snapshot),
            "one_client_beside_raw_borg": _load_document(status.one_client.beside_raw_borg),
            "one_client_idle": {"calls": status.one_client_idle.count},
            "many_clients_during_snapshot": _load_document(status.many_clients.during_snapshot),
            "many_clients_beside_raw_borg": _load_document(status.many_clients.beside_raw_borg),
            "many_clients_idle": _load_document(status.many_clients_idle),
            "snapshots_under_one_client": status.one_client.snapshots,
            "snapshots_under_many_clients": status.many_clients.snapshots,
        },
        "idle": asdict(bench.idle) | {"resident_bytes_at_end": bench.resident_bytes_at_end},
        "processes": {"backupctl_status_seconds": bench.processes.backupctl_status,
                      "borg_info_seconds": bench.processes.borg_info},
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _series(bench: BenchFigures) -> list[tuple[str, PairedSeries]]:
    pairs = bench.pairs
    series = [("full snapshot", pairs.full_snapshot), ("unchanged snapshot", pairs.unchanged_snapshot),
              ("restore", pairs.restore)]
    if bench.borgmatic is not None:
        series += [("full snapshot vs borgmatic", bench.borgmatic.full_snapshot),
                   ("unchanged snapshot vs borgmatic", bench.borgmatic.unchanged_snapshot)]
    return series


def _series_document(series: PairedSeries) -> dict[str, Any]:
    return {
        "ratio_median": series.ratio_median,
        "daemon_median_seconds": series.daemon_median,
        "reference_median_seconds": series.reference_median,
        "pairs": [asdict(pair) | {"ratio": pair.ratio} for pair in series.pairs],
    }


def _load_document(load: LoadSamples) -> dict[str, Any]:
    return {"calls": load.samples.count, "seconds": load.seconds, "calls_per_second": load.calls_per_second}
