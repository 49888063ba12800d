"""The scale run: a snapshot, a dry run and a restore of many small files; then a repository of
many archives with a full job history, paged through and snapshotted. Status is polled all along,
and the daemon logs every event-loop step over 5 ms."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd.jobs import HISTORY_LIMIT
from backupd.pages import MAX_SNAPSHOTS_LIMIT
from bench.daemon import HOSTNAME, BenchDaemon
from bench.dataset import Dataset, write_dataset
from bench.latency import poll_status
from backupd.loop_watch import WorstStep
from bench.loop_steps import SlowStep, TaskSteps, by_task, slow_steps, worst_on_cpu_within, worst_within
from bench.machine import Machine, describe_machine
from bench.options import BenchOptions, DatasetSize, ScaleSize
from bench.page_cache import sync_and_warm
from bench.procfs import CLOCK_TICKS_PER_SECOND, children_cpu_time, cpu_time, forget_peak, peak_resident_bytes
from bench.raw_borg import RawBorg
from bench.samples import LatencySamples, Window
from bench.stall_probe import Stall, StallProbe, worst_stall_within
from bench.stats import timed
from bench.workspace import Workspace, remove_tree

STATUS_POLL_RATE = 200.0
# Every page of both lists, over and over for at least this long, so that status is polled meanwhile.
PAGE_SECONDS = 5.0
# After a job the daemon saves its state, writes the metrics file and tells subscribers: watched this long.
AFTER_JOB_SECONDS = 3.0
SMALL_SOURCE_FILES = 20


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Phase:
    """Something the daemon did while one client polled status; what the daemon's log says of its event loop."""

    name: str
    window: Window
    status: LatencySamples
    worst_step: SlowStep | None = None
    worst_cpu_step: SlowStep | None = None
    slow_tasks: dict[str, TaskSteps] = field(default_factory=dict)
    peak_resident_bytes: int | None = None
    # The probe process's longest hold-up in the same window: how much the machine stalled.
    worst_stall: Stall | None = None


@dataclass(frozen=True)
class CpuShare:
    daemon_seconds: float
    borg_seconds: float

    @property
    def share(self) -> float:
        return self.daemon_seconds / self.borg_seconds if self.borg_seconds else float("nan")


@dataclass
class ScaleFigures:
    machine: Machine
    size: ScaleSize
    dataset: Dataset
    snapshot_seconds: float
    raw_snapshot_seconds: float
    restore_cpu: CpuShare
    seeding_seconds: float
    raw_list_seconds: float
    configure_seconds: float
    history_seconds: float
    archives_seen: int
    jobs_in_history: int
    snapshot_pages: LatencySamples
    job_pages: LatencySamples
    phases: list[Phase]
    worst_step_gauge: WorstStep | None
    wall_seconds: float = 0.0

    @property
    def snapshot_ratio(self) -> float:
        return self.snapshot_seconds / self.raw_snapshot_seconds


def measured(daemon: BenchDaemon, name: str, action: Callable[[], Any]) -> tuple[Phase, Any]:
    """The action on a thread while one client polls status at a steady rate."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = action()
        except BaseException as error:
            outcome["failure"] = error

    thread = threading.Thread(target=run, name=name)
    with daemon.client() as poller:
        started = time.time()
        thread.start()
        samples = poll_status(poller, STATUS_POLL_RATE, thread.is_alive)
        thread.join()
        ended = time.time()
    if "failure" in outcome:
        raise outcome["failure"]
    return Phase(name, Window(started, ended), samples), outcome.get("result")


def run_scale(options: BenchOptions, workspace: Workspace) -> ScaleFigures:
    assert options.scale is not None
    size = options.scale
    started = time.perf_counter()
    machine = describe_machine()
    say(f"scale run: writing {size.files:,} files")
    dataset = write_dataset(workspace.data, DatasetSize(size.files * size.mean_file_bytes, size.files), options.seed)
    raw = RawBorg(workspace.raw_borg_base_dir)
    daemon = BenchDaemon(workspace.daemon_folder, verbose=True)
    probe = StallProbe(workspace.root / "stalls.jsonl")
    daemon.start()
    probe.start()
    try:
        figures = _measure(workspace, daemon, raw, dataset, size, machine)
        figures.worst_step_gauge = worst_step_gauge(daemon.metrics_path)
    finally:
        probe.stop()
        daemon.stop()
    steps, stalls = slow_steps(daemon.log_path), probe.stalls()
    for phase in figures.phases:
        phase.worst_step = worst_within(steps, phase.window)
        phase.worst_cpu_step = worst_on_cpu_within(steps, phase.window)
        phase.slow_tasks = by_task(steps, phase.window)
        phase.worst_stall = worst_stall_within(stalls, phase.window)
    figures.wall_seconds = time.perf_counter() - started
    return figures


def _measure(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset, size: ScaleSize,
             machine: Machine) -> ScaleFigures:
    phases: list[Phase] = []
    say("raw borg create, then the daemon's snapshot of the same files")
    raw_repository = workspace.repository("scale-raw")
    raw.init(raw_repository)
    sync_and_warm([dataset.root])
    raw_snapshot_seconds = timed(lambda: raw.create(raw_repository, "scale", dataset.root))[0]
    daemon.configure(workspace.repository("scale-files"), [dataset.root])
    sync_and_warm([dataset.root])
    snapshot, job = measured(daemon, f"snapshot of {dataset.file_count:,} files", daemon.snapshot)
    phases.append(snapshot)
    remove_tree(raw_repository)

    say("dry run of a restore, then the restore")
    first = dataset.root / "folder000" / "file00000.random"
    first.unlink()
    (first.parent / "made-later").write_bytes(b"new")
    forget_peak(daemon.pid)
    dry_run = measured(daemon, "restore dry run", lambda: daemon.restore(dry_run=True))[0]
    dry_run.peak_resident_bytes = peak_resident_bytes(daemon.pid)
    phases.append(dry_run)
    forget_peak(daemon.pid)
    restore = measured(daemon, f"restore of {dataset.file_count:,} files", daemon.restore)[0]
    restore.peak_resident_bytes = peak_resident_bytes(daemon.pid)
    phases.append(restore)
    daemon.wait_for_restore_clean_up()
    say("the restore again, without status calls, for the daemon's CPU beside borg's")
    restore_cpu = restore_cpu_share(daemon)

    say(f"{size.archives:,} archives in a new repository")
    repository = workspace.repository("scale-archives")
    seeder = RawBorg(daemon.borg_base_dir)
    seeder.init(repository)
    seeding_seconds = timed(lambda: write_many_archives(seeder, repository, size.archives - 1))[0]
    raw_list_seconds, listing = timed(lambda: seeder.run("list", "--short", str(repository)))
    if len(listing.splitlines()) != size.archives - 1:
        raise RuntimeError(f"borg list shows {len(listing.splitlines())} archives, not {size.archives - 1}")
    small = workspace.root / "small"
    small.mkdir()
    for index in range(SMALL_SOURCE_FILES):
        (small / f"file{index:02d}").write_bytes(b"small %d\n" % index)
    configure_seconds = timed(lambda: daemon.configure(repository, [small]))[0]
    daemon.wait_for_a_new_snapshot_name()
    daemon.snapshot()
    say(f"{size.jobs} dry runs for the job history")
    history_seconds = timed(lambda: fill_history(daemon, size.jobs))[0]
    archives_seen = daemon.call("status")["snapshot_count"]

    say("paging through snapshots and jobs, then one more snapshot")
    pages, (snapshot_pages, job_pages) = measured(
        daemon, f"pages of snapshots and jobs, {size.archives:,} archives", lambda: page_through(daemon))
    phases.append(pages)
    daemon.wait_for_a_new_snapshot_name()
    phases.append(measured(daemon, f"a snapshot and {AFTER_JOB_SECONDS:.0f} s after, {size.archives:,} archives",
                           lambda: (daemon.snapshot(), time.sleep(AFTER_JOB_SECONDS)))[0])
    jobs_in_history = len(daemon.call("jobs", {"limit": HISTORY_LIMIT}))
    return ScaleFigures(
        machine=machine, size=size, dataset=dataset, snapshot_seconds=snapshot.window.seconds,
        raw_snapshot_seconds=raw_snapshot_seconds, restore_cpu=restore_cpu, seeding_seconds=seeding_seconds,
        raw_list_seconds=raw_list_seconds, configure_seconds=configure_seconds, history_seconds=history_seconds,
        archives_seen=archives_seen, jobs_in_history=jobs_in_history, snapshot_pages=snapshot_pages,
        job_pages=job_pages, phases=phases, worst_step_gauge=None,
    )


def restore_cpu_share(daemon: BenchDaemon) -> CpuShare:
    """The daemon's own CPU time and borg's until the restore answers: the previous content's
    deletion, after the answer, is not counted."""
    own_before, borg_before = cpu_time(daemon.pid), children_cpu_time(daemon.pid)
    daemon.restore()
    own_after, borg_after = cpu_time(daemon.pid), children_cpu_time(daemon.pid)
    daemon.wait_for_restore_clean_up()
    return CpuShare((own_after.ticks - own_before.ticks) / CLOCK_TICKS_PER_SECOND,
                    (borg_after.ticks - borg_before.ticks) / CLOCK_TICKS_PER_SECOND)


def write_many_archives(borg: RawBorg, repository: Path, count: int) -> None:
    subprocess.run([sys.executable, "-m", "bench.many_archives", str(repository), str(count), HOSTNAME],
                   env=borg.environment(), stdin=subprocess.DEVNULL, check=True)


def fill_history(daemon: BenchDaemon, jobs: int) -> None:
    for index in range(jobs):
        daemon.restore(dry_run=True)
        if (index + 1) % 50 == 0:
            say(f"{index + 1} of {jobs} dry runs")


def page_through(daemon: BenchDaemon) -> tuple[LatencySamples, LatencySamples]:
    """Every page of `snapshots` (the largest pages) and of `jobs`, over and over; each call timed."""
    snapshot_pages, job_pages = LatencySamples(), LatencySamples()
    deadline = time.monotonic() + PAGE_SECONDS
    with daemon.client() as client:
        while time.monotonic() < deadline:
            for method, limit, samples in (("snapshots", MAX_SNAPSHOTS_LIMIT, snapshot_pages),
                                           ("jobs", HISTORY_LIMIT, job_pages)):
                cursor: str | None = ""
                while cursor is not None:
                    started = time.time()
                    seconds, page = timed(lambda: client.call(method, {"limit": limit, "cursor": cursor}))
                    samples.add(started, seconds)
                    cursor = page["cursor"]
    return snapshot_pages, job_pages


def worst_step_gauge(metrics_path: Path) -> WorstStep | None:
    """backupd_event_loop_worst_step_seconds of the metrics file, with the CPU seconds of that step: the worst step
    since the daemon started."""
    if not metrics_path.exists():
        return None
    gauges: dict[str, tuple[float, str]] = {}
    for line in metrics_path.read_text().splitlines():
        name, brace, rest = line.partition("{")
        if brace and name in ("backupd_event_loop_worst_step_seconds", "backupd_event_loop_worst_step_cpu_seconds"):
            labels, _, value = rest.rpartition(" ")
            gauges[name] = float(value), labels.partition('task="')[2].rstrip('"}')
    if "backupd_event_loop_worst_step_seconds" not in gauges or "backupd_event_loop_worst_step_cpu_seconds" not in gauges:
        return None
    seconds, task = gauges["backupd_event_loop_worst_step_seconds"]
    return WorstStep(seconds, task, gauges["backupd_event_loop_worst_step_cpu_seconds"][0])
