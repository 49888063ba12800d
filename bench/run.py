"""One bench run, phase by phase: data, warm-up and idle, pairs, status under load."""

from __future__ import annotations

import os
import sys
import time
from importlib.metadata import version

from bench.daemon import BenchDaemon
from bench.dataset import Dataset, write_dataset
from bench.idle import IdleFigures, measure_idle
from bench.latency import measure_status_latency
from bench.options import MB, BenchOptions
from bench.pairs import run_pairs
from bench.procfs import resident_bytes
from bench.raw_borg import RawBorg
from bench.report import BenchFigures
from bench.throughput import measure_status_throughput
from bench.workspace import Workspace, remove_tree


def say(message: str) -> None:
    """Progress goes to stderr; stdout holds only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_bench(options: BenchOptions, workspace: Workspace) -> BenchFigures:
    started = time.perf_counter()
    load_average_at_start = os.getloadavg()[0]
    size = options.dataset
    say(f"writing {size.total_bytes / MB:.0f} MB in {size.file_count} files")
    dataset = write_dataset(workspace.data, size)
    raw = RawBorg(workspace.raw_borg_base_dir)
    daemon = BenchDaemon(workspace.daemon_folder)
    daemon.start()
    try:
        say("warm-up snapshots, then the idle daemon")
        idle = warm_up_then_idle(workspace, daemon, raw, dataset, options.idle_seconds)
        say(f"{options.pairs} pairs of full snapshot, unchanged snapshot, restore")
        pairs = run_pairs(workspace, daemon, raw, dataset, options.pairs,
                          on_pair_done=lambda index: say(f"pair {index + 1} of {options.pairs} done"))
        say("status latency while snapshots run")
        latency = measure_status_latency(workspace, daemon, raw, dataset, options.status_poll_rate,
                                         options.latency_samples_wanted, options.latency_runs_at_most)
        say("status throughput")
        throughput = measure_status_throughput(daemon.socket, options.throughput_processes,
                                               options.throughput_connections_per_process,
                                               options.throughput_seconds)
        resident_at_end = resident_bytes(daemon.pid)
    finally:
        daemon.stop()
    return BenchFigures(
        dataset=dataset, pair_count=options.pairs, pairs=pairs, latency=latency, throughput=throughput, idle=idle,
        resident_bytes_at_end=resident_at_end, borg_version=version("borgbackup"),
        wall_seconds=time.perf_counter() - started, cpu_count=os.cpu_count() or 0,
        load_average_at_start=load_average_at_start,
    )


def warm_up_then_idle(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                      idle_seconds: float) -> IdleFigures:
    """One untimed snapshot on each side brings borg's code and the data into the page cache;
    the daemon, just started, configured and done with one snapshot, is then measured at rest."""
    daemon_repository = workspace.repository("daemon-warm-up")
    raw_repository = workspace.repository("raw-warm-up")
    raw.init(raw_repository)
    raw.create(raw_repository, "warm-up", dataset.root)
    daemon.configure(daemon_repository, [dataset.root])
    daemon.snapshot()
    idle = measure_idle(daemon.pid, idle_seconds)
    remove_tree(daemon_repository)
    remove_tree(raw_repository)
    return idle
