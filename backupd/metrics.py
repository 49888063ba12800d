"""The metrics file: the overview and the job history in Prometheus text format, rewritten
atomically at start and whenever the overview changes, for node_exporter's textfile collector.
Its folder must be one that only root or the daemon's user can change (see private_files)."""

from __future__ import annotations

import glob
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from backupd.events import Subscriber
from backupd.jobs import HISTORY_LIMIT, Job
from backupd.loop_watch import LoopWatch, WorstStep
from backupd.private_files import remove_temporary_files, write_atomically
from backupd.service import Service

log = logging.getLogger(__name__)

METRICS_FILE_MODE = 0o644

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Metric:
    """One metric family: its samples, each with its labels. A family without samples is still described."""

    name: str
    help: str
    samples: tuple[tuple[Labels, float], ...]
    kind: str = "gauge"


def collect(overview: Mapping[str, Any], history: Sequence[Job], worst_step: WorstStep | None = None) -> list[Metric]:
    last = overview.get("last_snapshot") or {}
    problem = overview.get("problem")
    mirror = overview.get("mirror") or {}
    job_counts = Counter((job.kind, str(job.state)) for job in history)
    return [
        _single("backupd_last_success_timestamp_seconds",
                "Unix time the newest snapshot was taken (when it started); absent before the first", last.get("time")),
        _single("backupd_last_snapshot_duration_seconds", "How long the newest snapshot took", last.get("duration")),
        _single("backupd_last_snapshot_files", "Files in the newest snapshot", last.get("files")),
        _single("backupd_snapshots", "Snapshots in the repository", overview.get("snapshot_count")),
        _single("backupd_repository_stored_bytes",
                "Bytes the repository stores for all snapshots, deduplicated and compressed",
                overview.get("total_size")),
        _single("backupd_next_run_timestamp_seconds",
                "Unix time of the next automatic snapshot; absent when backups are not automatic",
                overview.get("next_run")),
        Metric("backupd_problem", "1 for the problem the overview shows, by its code; no sample when there is none",
               (((("code", problem["code"]),), 1.0),) if problem else ()),
        _single("backupd_repository_local_bytes", "Bytes the local repository folder takes on disk",
                overview.get("local_size")),
        _single("backupd_mirror_last_success_timestamp_seconds",
                "Unix time the off-site mirror last completed; absent before the first or without a mirror",
                mirror.get("last_success")),
        _single("backupd_mirror_snapshots_not_off_site", "Snapshots not yet copied to the off-site bucket",
                mirror.get("snapshots_not_off_site")),
        _single("backupd_mirror_bytes_waiting", "Bytes of the local repository not yet copied to the bucket",
                mirror.get("bytes_waiting")),
        Metric("backupd_mirror_failing", "1 while the off-site mirror fails, by error code; no sample otherwise",
               (((("code", mirror["last_error"]["code"]),), 1.0),) if mirror.get("last_error") else ()),
        Metric("backupd_jobs_total", f"Jobs in the kept history (the last {HISTORY_LIMIT}) by kind and state",
               tuple(((("kind", kind), ("state", state)), float(count))
                     for (kind, state), count in sorted(job_counts.items()))),
        Metric("backupd_event_loop_worst_step_seconds",
               "The longest the event loop ran one task without coming back, since the daemon started, by task",
               (((("task", worst_step.task),), worst_step.seconds),) if worst_step else ()),
        Metric("backupd_event_loop_worst_step_cpu_seconds",
               "CPU time the daemon's event-loop thread spent in that same step: its own work, the rest of the step "
               "it waited for a core or the disk",
               (((("task", worst_step.task),), worst_step.cpu_seconds),) if worst_step else ()),
    ]


def render(metrics: Sequence[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            label_text = ",".join(f'{name}="{_escape_label(text)}"' for name, text in labels)
            series = f"{metric.name}{{{label_text}}}" if labels else metric.name
            lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


async def keep_metrics_file(service: Service, loop_watch: LoopWatch | None = None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Write the file now and after every change of the overview (a job started or ended, the schedule moved)."""
    subscriber: Subscriber = service.hub.subscribe()
    task_status.started()
    writer = _MetricsWriter()
    try:
        await writer.write(service, loop_watch)
        while batch := await subscriber.next_batch():
            if any(notification.method != "job.progress" for notification in batch):
                await writer.write(service, loop_watch)
    finally:
        service.hub.unsubscribe(subscriber)


class _MetricsWriter:
    """Writes off the event loop; a failure is logged once until it changes."""

    def __init__(self) -> None:
        self._last_error: str | None = None
        self._cleaned: Path | None = None

    async def write(self, service: Service, loop_watch: LoopWatch | None) -> None:
        path = service.settings.metrics_file
        if path is None:
            return
        worst_step = loop_watch.worst if loop_watch else None
        text = render(collect(service.overview.record().to_wire(), service.jobs.recent(HISTORY_LIMIT), worst_step))
        try:
            if self._cleaned != path:
                await trio.to_thread.run_sync(remove_temporary_files, path.parent, glob.escape(path.name))
                self._cleaned = path
            await trio.to_thread.run_sync(write_atomically, path, text.encode("utf-8"), METRICS_FILE_MODE)
        except OSError as error:
            message = f"cannot write the metrics file {path}: {error.strerror or error}"
            if message != self._last_error:
                log.warning("%s", message)
            self._last_error = message
            return
        self._last_error = None


def _single(name: str, help_text: str, value: float | None) -> Metric:
    return Metric(name, help_text, (((), float(value)),) if value is not None else ())


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
