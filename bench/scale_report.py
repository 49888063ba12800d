"""The scale run's figures as a Markdown table, with the slow steps by task, and as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.figures import MIB
from bench.loop_steps import SlowStep
from bench.scale import Phase, ScaleFigures
from bench.samples import LatencySamples
from bench.stall_probe import STALL_BOUND_SECONDS, Stall

STEP_BOUND_MS = 5.0
CPU_NOTE = (f"A step's CPU time is the daemon's thread on a core; for the rest of the step it waited for a core or "
            f"the disk. A virtual machine's core its host takes away still counts as CPU time: the probe, a separate "
            f"process waking every millisecond (and every fifth time doing about 0.1 ms of fixed work), shows how long "
            f"the machine held it up in the same phase. "
            f"Only steps over {STEP_BOUND_MS:g} ms are logged, so the worst on the CPU is the worst of those; "
            f"a step with more than {STEP_BOUND_MS:g} ms on the CPU is always one of them.")


def milliseconds(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds * 1000:.2f} ms"


def worst_step_text(worst: SlowStep | None, worst_on_cpu: SlowStep | None = None) -> str:
    """The longest step, with how much of it was on the CPU; and the step longest on the CPU when it is another."""
    if worst is None:
        return f"none over {STEP_BOUND_MS:g} ms"
    text = f"{worst.seconds * 1000:.1f} ms{_of_which_on_cpu(worst.cpu_seconds)} ({worst.task})"
    if worst_on_cpu is not None and worst_on_cpu != worst and worst_on_cpu.cpu_seconds is not None:
        text += f"; worst on the CPU {worst_on_cpu.cpu_seconds * 1000:.1f} ms ({worst_on_cpu.task})"
    return text


def stall_text(stall: Stall | None) -> str:
    if stall is None:
        return f"none over {STALL_BOUND_SECONDS * 1000:g} ms"
    return f"{stall.seconds * 1000:.1f} ms, of which {stall.cpu_seconds * 1000:.1f} ms on its CPU"


def _of_which_on_cpu(cpu_seconds: float | None) -> str:
    return "" if cpu_seconds is None else f", of which {cpu_seconds * 1000:.1f} ms on the CPU"


def rows(scale: ScaleFigures) -> list[tuple[str, str]]:
    files = f"{scale.dataset.file_count:,} files"
    archives = f"{scale.size.archives:,} archives"
    lines = [
        (f"snapshot of {files}", f"{scale.snapshot_seconds:.1f} s, raw borg {scale.raw_snapshot_seconds:.1f} s: "
                                 f"{scale.snapshot_ratio:.2f} x"),
    ]
    for phase in scale.phases:
        if phase.peak_resident_bytes is not None:
            lines.append((f"{phase.name}: daemon peak RSS", f"{phase.peak_resident_bytes / MIB:.1f} MiB"))
    cpu = scale.restore_cpu
    lines.append((f"restore of {files}, no status calls: daemon CPU / borg's",
                  f"{cpu.daemon_seconds:.1f} s / {cpu.borg_seconds:.1f} s = {cpu.share:.1%}"))
    for phase in scale.phases:
        lines.append((f"{phase.name}: worst event-loop step", worst_step_text(phase.worst_step, phase.worst_cpu_step)))
        lines.append((f"{phase.name}: probe beside the daemon, worst hold-up", stall_text(phase.worst_stall)))
        lines.append((f"{phase.name}: status p99 / max ({phase.status.count:,} calls)",
                      f"{milliseconds(phase.status.p99)} / {milliseconds(phase.status.worst)}"))
    lines += [
        (f"`snapshots` page of 1,000, {archives}: p50 / max", _p50_max(scale.snapshot_pages)),
        (f"`jobs` page of 200, {scale.jobs_in_history} jobs: p50 / max", _p50_max(scale.job_pages)),
        (f"{archives} written (borg's library, one process)", f"{scale.seeding_seconds:.1f} s"),
        (f"`borg list` of {archives}", f"{scale.raw_list_seconds:.2f} s"),
        (f"configure on {archives} (reads them)", f"{scale.configure_seconds:.2f} s"),
        (f"{scale.size.jobs} dry runs for the history", f"{scale.history_seconds:.0f} s"),
    ]
    if (gauge := scale.worst_step_gauge) is not None:
        lines.append(("metrics file: worst step since start",
                      f"{gauge.seconds * 1000:.1f} ms{_of_which_on_cpu(gauge.cpu_seconds)} ({gauge.task})"))
    return lines


def _p50_max(samples: LatencySamples) -> str:
    return f"{milliseconds(samples.p50)} / {milliseconds(samples.worst)} ({samples.count} calls)"


def slow_task_lines(phases: list[Phase]) -> list[str]:
    lines = []
    for phase in phases:
        for task, steps in sorted(phase.slow_tasks.items(), key=lambda item: -item[1].longest):
            most_cpu = "" if steps.most_cpu is None else f", most on the CPU {steps.most_cpu * 1000:.1f} ms"
            lines.append(f"- {phase.name}: {task}, {steps.count} step(s) over {STEP_BOUND_MS:g} ms, "
                         f"longest {steps.longest * 1000:.1f} ms{most_cpu}")
    return lines or [f"- no step over {STEP_BOUND_MS:g} ms in any phase"]


def title(scale: ScaleFigures) -> str:
    return (f"backupd scale run: {scale.dataset.file_count:,} files of {scale.dataset.total_bytes / 1e6:,.0f} MB, "
            f"{scale.archives_seen:,} archives, {scale.jobs_in_history} jobs in the history")


def render(scale: ScaleFigures) -> str:
    table = ["| figure | value |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows(scale))]
    return "\n".join([f"## {title(scale)}", "", scale.machine.describe(), "", *table, "",
                      "Event-loop steps over 5 ms, by task:", "", *slow_task_lines(scale.phases), "",
                      CPU_NOTE, "",
                      f"Bench wall time {scale.wall_seconds:.0f} s."])


def write_markdown(path: Path, scale: ScaleFigures) -> None:
    path.write_text("\n".join(["| figure | value |", "| --- | --- |",
                               *(f"| {name} | {value} |" for name, value in rows(scale))]) + "\n", encoding="utf-8")


def write_json(path: Path, scale: ScaleFigures) -> None:
    document: dict[str, Any] = {
        "title": title(scale),
        "files": scale.dataset.file_count, "archives": scale.archives_seen, "jobs_in_history": scale.jobs_in_history,
        "snapshot_seconds": scale.snapshot_seconds, "raw_snapshot_seconds": scale.raw_snapshot_seconds,
        "snapshot_ratio": scale.snapshot_ratio,
        "restore_cpu": {"daemon_seconds": scale.restore_cpu.daemon_seconds,
                        "borg_seconds": scale.restore_cpu.borg_seconds, "share": scale.restore_cpu.share},
        "phases": [{
            "name": phase.name, "seconds": phase.window.seconds, "status_calls": phase.status.count,
            "status_p99_seconds": phase.status.p99, "status_max_seconds": phase.status.worst,
            "worst_step_seconds": phase.worst_step.seconds if phase.worst_step else None,
            "worst_step_task": phase.worst_step.task if phase.worst_step else None,
            "worst_step_cpu_seconds": phase.worst_step.cpu_seconds if phase.worst_step else None,
            "worst_cpu_step_seconds": phase.worst_cpu_step.seconds if phase.worst_cpu_step else None,
            "worst_cpu_step_cpu_seconds": phase.worst_cpu_step.cpu_seconds if phase.worst_cpu_step else None,
            "worst_cpu_step_task": phase.worst_cpu_step.task if phase.worst_cpu_step else None,
            "peak_resident_bytes": phase.peak_resident_bytes,
            "probe_worst_stall_seconds": phase.worst_stall.seconds if phase.worst_stall else None,
            "probe_worst_stall_cpu_seconds": phase.worst_stall.cpu_seconds if phase.worst_stall else None,
        } for phase in scale.phases],
        "snapshot_pages": {"calls": scale.snapshot_pages.count, "p50_seconds": scale.snapshot_pages.p50,
                           "max_seconds": scale.snapshot_pages.worst},
        "job_pages": {"calls": scale.job_pages.count, "p50_seconds": scale.job_pages.p50,
                      "max_seconds": scale.job_pages.worst},
        "worst_step_gauge_seconds": scale.worst_step_gauge.seconds if scale.worst_step_gauge else None,
        "worst_step_gauge_cpu_seconds": scale.worst_step_gauge.cpu_seconds if scale.worst_step_gauge else None,
        "worst_step_gauge_task": scale.worst_step_gauge.task if scale.worst_step_gauge else None,
        "rows": dict(rows(scale)),
        "wall_seconds": scale.wall_seconds,
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False,
                               default=str) + "\n", encoding="utf-8")
