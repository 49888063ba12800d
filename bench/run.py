"""One bench run, phase by phase: data, warm-up and idle, status as a process and from idle clients, pairs,
borgmatic when installed, status while snapshots run."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from bench.borgmatic import find_borgmatic
from bench.daemon import BenchDaemon
from bench.dataset import Dataset, write_dataset
from bench.idle import IdleFigures, measure_idle
from bench.latency import measure_one_client_during_snapshots, measure_one_client_idle
from bench.machine import describe_machine
from bench.options import MB, BenchOptions
from bench.pairs import run_borgmatic_pairs, run_pairs
from bench.procfs import resident_bytes
from bench.raw_borg import RawBorg
from bench.report import BenchFigures, StatusFigures
from bench.status_process import ProcessTimes, measure_status_processes
from bench.throughput import ClientSpread, measure_many_clients_during_snapshots, measure_many_clients_idle
from bench.workspace import Workspace, remove_tree


def say(message: str) -> None:
    """Progress goes to stderr; stdout holds only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class AtRest:
    """What the daemon, configured and done with one snapshot, costs and answers while nothing runs."""

    idle: IdleFigures
    processes: ProcessTimes
    compressed_fraction: float


def run_bench(options: BenchOptions, workspace: Workspace) -> BenchFigures:
    started = time.perf_counter()
    machine = describe_machine()
    preset = options.preset
    spread = ClientSpread(options.concurrent_processes, options.concurrent_connections_per_process)
    size = options.dataset
    say(f"{preset.name} run: writing {size.total_bytes / MB:,.0f} MB in {size.file_count:,} files, seed {options.seed}")
    dataset = write_dataset(workspace.data, size, options.seed)
    raw = RawBorg(workspace.raw_borg_base_dir)
    borgmatic = find_borgmatic(raw)
    daemon = BenchDaemon(workspace.daemon_folder)
    daemon.start()
    try:
        say(f"warm-up snapshots, then the idle daemon for {preset.idle_seconds:.0f} s")
        at_rest = warm_up_then_idle(workspace, daemon, raw, dataset, options)
        say("status from one client and from many, idle daemon")
        one_client_idle = measure_one_client_idle(daemon, options.status_poll_rate, preset.latency_samples_wanted)
        many_clients_idle = measure_many_clients_idle(daemon.socket, spread, preset.concurrent_seconds)
        say(f"{options.pairs} pair(s) of full snapshot, unchanged snapshot, "
            f"{options.preset.restores_per_pair} restore(s)")
        pairs = run_pairs(workspace, daemon, raw, dataset, options.pairs, options.preset.restores_per_pair,
                          on_pair_done=lambda index: say(f"pair {index + 1} of {options.pairs} done"))
        borgmatic_results = None
        if borgmatic is not None:
            say(f"{options.pairs} pair(s) of the daemon and borgmatic create")
            borgmatic_results = run_borgmatic_pairs(
                workspace, daemon, borgmatic, dataset, options.pairs,
                on_pair_done=lambda index: say(f"borgmatic pair {index + 1} of {options.pairs} done"))
        say("status from one client while snapshots run")
        one_client = measure_one_client_during_snapshots(
            workspace, daemon, raw, dataset, options.status_poll_rate,
            preset.latency_samples_wanted, preset.latency_runs_at_most)
        say(f"status from {spread.connections} clients while snapshots run")
        many_clients = measure_many_clients_during_snapshots(workspace, daemon, raw, dataset, spread,
                                                             preset.concurrent_runs)
        resident_at_end = resident_bytes(daemon.pid)
    finally:
        daemon.stop()
    return BenchFigures(
        machine=machine, preset=preset, dataset=dataset, compressed_fraction=at_rest.compressed_fraction,
        pair_count=options.pairs, pairs=pairs, borgmatic=borgmatic_results,
        status=StatusFigures(
            poll_rate=options.status_poll_rate, spread=spread,
            one_client_idle=one_client_idle, one_client=one_client,
            many_clients_idle=many_clients_idle, many_clients=many_clients,
        ),
        processes=at_rest.processes, idle=at_rest.idle, resident_bytes_at_end=resident_at_end,
        wall_seconds=time.perf_counter() - started,
    )


def warm_up_then_idle(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                      options: BenchOptions) -> AtRest:
    """One untimed snapshot on each side brings borg's code and the data into the page cache;
    the daemon, just started, configured and done with one snapshot, is then measured at rest,
    and `backupctl status` against `borg info --json` of that snapshot's repository."""
    daemon_repository = workspace.repository("daemon-warm-up")
    raw_repository = workspace.repository("raw-warm-up")
    raw.init(raw_repository)
    stats = raw.create(raw_repository, "warm-up", dataset.root)["archive"]["stats"]
    daemon.configure(daemon_repository, [dataset.root])
    daemon.snapshot()
    idle = measure_idle(daemon.pid, options.preset.idle_seconds)
    say("backupctl status and borg info --json as processes")
    processes = measure_status_processes(daemon.socket, raw, daemon_repository, options.preset.process_runs)
    remove_tree(daemon_repository)
    remove_tree(raw_repository)
    return AtRest(idle=idle, processes=processes,
                  compressed_fraction=stats["compressed_size"] / stats["original_size"])
