"""Job records as text: lists, a job with its log, results, notifications."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backupctl.render import text as fmt
from backupctl.render.text import SHOWN_TO_ADMINS, path_list

WARNINGS_MARKER = "!"
WARNINGS_SHOWN = 10


@dataclass(frozen=True)
class JobOutcome:
    """What a job that succeeded means for people, and whether all is well (exit 0)."""

    text: str
    good: bool = True


DescribeSuccess = Callable[[Mapping[str, Any]], JobOutcome]


def warning_lines(job: Mapping[str, Any]) -> list[str]:
    """borg's warnings about a job, the first few, then how to see them all."""
    result = job.get("result")
    warnings = (result.get("warnings") or []) if isinstance(result, Mapping) else []
    lines = [f"warning: {warning}" for warning in warnings[:WARNINGS_SHOWN]]
    total = max(len(warnings), result.get("warning_count") or 0) if warnings else 0
    if total > len(lines):
        lines.append(f"warning: ... and {total - len(lines):,} more: `backupctl log {job.get('id')}` lists them")
    return lines


def has_warnings(job: Mapping[str, Any]) -> bool:
    """borg could not read some files: the snapshot holds everything else."""
    result = job.get("result")
    return isinstance(result, Mapping) and bool(result.get("warnings") or result.get("warning_count"))


def job_duration(job: Mapping[str, Any]) -> str:
    return fmt.duration((job.get("finished") or 0) - (job.get("started") or 0))


def job_kind(job: Mapping[str, Any]) -> str:
    """The kind of job, "restore (dry run)" for a restore that only said what it would change."""
    return f"{job.get('kind')} (dry run)" if job.get("dry_run") else str(job.get("kind"))


def job_row(job: Mapping[str, Any], now: float) -> tuple[str, ...]:
    started = job.get("started")
    ended = job.get("finished") or now
    error = job.get("error") or {}
    return (
        str(job.get("id")),
        job_kind(job),
        str(job.get("trigger")),
        str(job.get("state")) + (WARNINGS_MARKER if has_warnings(job) else ""),
        fmt.timestamp(started),
        fmt.duration(ended - started) if started is not None else fmt.UNKNOWN,
        str(error.get("code", "")),
    )


def describe_jobs(records: Sequence[Mapping[str, Any]], now: float) -> str:
    if not records:
        return "No jobs yet."
    lines = [fmt.table(("ID", "KIND", "TRIGGER", "STATE", "STARTED", "DURATION", "ERROR"),
                       [job_row(record, now) for record in records])]
    if any(has_warnings(record) for record in records):
        lines.append(f"{WARNINGS_MARKER} with warnings: `backupctl log JOB_ID` shows them")
    return "\n".join(lines)


def describe_job_with_log(job: Mapping[str, Any], now: float) -> str:
    started = job.get("started")
    ended = job.get("finished")
    took = f", took {job_duration(job)}" if ended else ", still running"
    pairs = [
        ("Job", f"{job_kind(job)} job {job.get('id')} ({job.get('trigger')})"),
        ("State", str(job.get("state"))),
        ("Started", f"{fmt.timestamp(started)} ({fmt.relative_time(started, now)}){took}"),
    ]
    error = job.get("error")
    if error:
        pairs.append(("Error", f"{error.get('code')}: {error.get('message')}"))
    result = job.get("result") or {}
    snapshot = result.get("snapshot") if job.get("kind") == "snapshot" else None
    if snapshot:
        pairs.append(("Snapshot", f"{snapshot.get('name')}: {fmt.plural(snapshot.get('files') or 0, 'file')}, "
                                  f"{fmt.human_size(snapshot.get('original_size'))} original, "
                                  f"{fmt.human_size(snapshot.get('deduplicated_size'))} new"))
    if result.get("warning_count"):
        shown = len(result.get("warnings") or [])
        pairs.append(("Warnings", f"borg reported {fmt.plural(result['warning_count'], 'warning')}"
                                  f" ({shown} listed in the result); what it could not read is not in the snapshot"))
    if job.get("log", []) is None:
        return "\n".join([fmt.fields(pairs), f"Log: {SHOWN_TO_ADMINS}"])
    log = job.get("log") or []
    counts = [fmt.plural(len(log), "line")]
    for level in ("warning", "error"):
        if count := sum(1 for line in log if line.get("level") == level):
            counts.append(fmt.plural(count, level))
    return "\n".join([fmt.fields(pairs), f"Log ({', '.join(counts)}):", *map(describe_log_line, log)])


def describe_log_line(line: Mapping[str, Any]) -> str:
    """"  2024-05-01 14:03:22  warning  message", further lines of the message indented below it."""
    heading = f"  {fmt.timestamp(line.get('time'))}  {str(line.get('level')):<7}  "
    first, *rest = str(line.get("message")).strip("\n").splitlines() or [""]
    return "\n".join([heading + first, *(" " * len(heading) + more for more in rest)])


def describe_snapshot_result(job: Mapping[str, Any]) -> JobOutcome:
    snapshot = (job.get("result") or {}).get("snapshot")
    took = job_duration(job)
    if not snapshot:
        return JobOutcome(f"Snapshot job {job.get('id')} succeeded in {took}.")
    return JobOutcome(
        f"Snapshot {snapshot.get('name')} taken in {took}: "
        f"{fmt.plural(snapshot.get('files') or 0, 'file')}, "
        f"{fmt.human_size(snapshot.get('original_size'))} original, "
        f"{fmt.human_size(snapshot.get('deduplicated_size'))} new."
    )


def describe_check_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    took = job_duration(job)
    if result.get("ok", True):
        return JobOutcome(f"Check done in {took}: no problems found.")
    errors = [f"  {error}" for error in result.get("errors") or []]
    return JobOutcome("\n".join([f"Check done in {took}: the repository is damaged.", *errors[-10:]]), good=False)


def describe_restore_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    return JobOutcome(
        f"Restored snapshot {result.get('snapshot')} in {job_duration(job)}: "
        f"{fmt.human_size(result.get('bytes'))} written to {path_list(result.get('targets') or [], ', ')}."
    )


def describe_mirror_result(job: Mapping[str, Any]) -> JobOutcome:
    result = job.get("result") or {}
    uploaded = fmt.plural(result.get("uploaded_files", 0), "file")
    compared = "every file" if result.get("compared") == "all" else fmt.plural(result.get("compared_files") or 0, "file")
    return JobOutcome(f"Mirrored: {uploaded} uploaded ({fmt.human_size(result.get('uploaded_bytes', 0))}), "
                      f"{result.get('deleted_files', 0)} deleted; {compared} compared with the bucket.")
