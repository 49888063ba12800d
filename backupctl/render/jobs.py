"""Job records as text: lists, a job with its log, results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backupctl.protocol import JobKind
from backupctl.records import (
    CheckResult,
    JobRecord,
    JobWithLog,
    LogLine,
    MirrorResult,
    RestoreResult,
    SnapshotResult,
    Warnings,
)
from backupctl.render import text as fmt
from backupctl.render.text import SHOWN_TO_ADMINS, path_list

WARNINGS_MARKER = "!"
WARNINGS_SHOWN = 10


@dataclass(frozen=True)
class JobOutcome:
    """What a job that succeeded means for people, and whether all is well (exit 0)."""

    text: str
    good: bool = True


DescribeSuccess = Callable[[JobRecord], JobOutcome]


def result_warnings(job: JobRecord) -> Warnings:
    return Warnings.from_wire(job.result) if isinstance(job.result, Mapping) else Warnings()


def warning_lines(job: JobRecord) -> list[str]:
    """borg's warnings about a job, the first few, then how to see them all."""
    found = result_warnings(job)
    warnings = found.warnings or []
    lines = [f"warning: {warning}" for warning in warnings[:WARNINGS_SHOWN]]
    total = max(len(warnings), found.warning_count or 0) if warnings else 0
    if total > len(lines):
        lines.append(f"warning: ... and {total - len(lines):,} more: `backupctl log {job.id}` lists them")
    return lines


def has_warnings(job: JobRecord) -> bool:
    """borg could not read some files: the snapshot holds everything else."""
    found = result_warnings(job)
    return bool(found.warnings or found.warning_count)


def job_duration(job: JobRecord) -> str:
    return fmt.duration((job.finished or 0) - (job.started or 0))


def job_kind(job: JobRecord) -> str:
    """The kind of job, "restore (dry run)" for a restore that only said what it would change."""
    return f"{job.kind} (dry run)" if job.dry_run else str(job.kind)


def job_row(job: JobRecord, now: float) -> tuple[str, ...]:
    ended = job.finished or now
    return (
        job.id,
        job_kind(job),
        str(job.trigger),
        str(job.state) + (WARNINGS_MARKER if has_warnings(job) else ""),
        fmt.timestamp(job.started),
        fmt.duration(ended - job.started),
        str(job.error.code) if job.error else "",
    )


def describe_jobs(records: Sequence[JobRecord], now: float) -> str:
    if not records:
        return "No jobs yet."
    lines = [fmt.table(("ID", "KIND", "TRIGGER", "STATE", "STARTED", "DURATION", "ERROR"),
                       [job_row(record, now) for record in records])]
    if any(has_warnings(record) for record in records):
        lines.append(f"{WARNINGS_MARKER} with warnings: `backupctl log JOB_ID` shows them")
    return "\n".join(lines)


def describe_job_with_log(job: JobWithLog, now: float) -> str:
    took = f", took {job_duration(job)}" if job.finished else ", still running"
    pairs = [
        ("Job", f"{job_kind(job)} job {job.id} ({job.trigger})"),
        ("State", str(job.state)),
        ("Started", f"{fmt.timestamp(job.started)} ({fmt.relative_time(job.started, now)}){took}"),
    ]
    if job.error:
        pairs.append(("Error", f"{job.error.code}: {job.error.message}"))
    snapshot = snapshot_result(job).snapshot if job.kind == JobKind.SNAPSHOT else None
    if snapshot:
        pairs.append(("Snapshot", f"{snapshot.name}: {fmt.plural(snapshot.files or 0, 'file')}, "
                                  f"{fmt.human_size(snapshot.original_size)} original, "
                                  f"{fmt.human_size(snapshot.deduplicated_size)} new"))
    warnings = result_warnings(job)
    if warnings.warning_count:
        shown = len(warnings.warnings or [])
        pairs.append(("Warnings", f"borg reported {fmt.plural(warnings.warning_count, 'warning')}"
                                  f" ({shown} listed in the result); what it could not read is not in the snapshot"))
    if job.log is None:
        return "\n".join([fmt.fields(pairs), f"Log: {SHOWN_TO_ADMINS}"])
    counts = [fmt.plural(len(job.log), "line")]
    for level in ("warning", "error"):
        if count := sum(1 for line in job.log if line.level == level):
            counts.append(fmt.plural(count, level))
    return "\n".join([fmt.fields(pairs), f"Log ({', '.join(counts)}):", *map(describe_log_line, job.log)])


def describe_log_line(line: LogLine) -> str:
    """"  2024-05-01 14:03:22  warning  message", further lines of the message indented below it."""
    heading = f"  {fmt.timestamp(line.time)}  {line.level:<7}  "
    first, *rest = line.message.strip("\n").splitlines() or [""]
    return "\n".join([heading + first, *(" " * len(heading) + more for more in rest)])


def snapshot_result(job: JobRecord) -> SnapshotResult:
    return SnapshotResult.from_wire(job.result or {})


def describe_snapshot_result(job: JobRecord) -> JobOutcome:
    snapshot = snapshot_result(job).snapshot
    took = job_duration(job)
    if not snapshot:
        return JobOutcome(f"Snapshot job {job.id} succeeded in {took}.")
    return JobOutcome(
        f"Snapshot {snapshot.name} taken in {took}: "
        f"{fmt.plural(snapshot.files or 0, 'file')}, "
        f"{fmt.human_size(snapshot.original_size)} original, "
        f"{fmt.human_size(snapshot.deduplicated_size)} new."
    )


def describe_check_result(job: JobRecord) -> JobOutcome:
    result = CheckResult.from_wire(job.result or {})
    took = job_duration(job)
    if result.ok:
        return JobOutcome(f"Check done in {took}: no problems found.")
    errors = [f"  {error}" for error in result.errors or []]
    return JobOutcome("\n".join([f"Check done in {took}: the repository is damaged.", *errors[-10:]]), good=False)


def describe_restore_result(job: JobRecord) -> JobOutcome:
    result = RestoreResult.from_wire(job.result or {})
    return JobOutcome(
        f"Restored snapshot {result.snapshot} in {job_duration(job)}: "
        f"{fmt.human_size(result.bytes)} written to {path_list(result.targets or [], ', ')}."
    )


def describe_mirror_result(job: JobRecord) -> JobOutcome:
    result = MirrorResult.from_wire(job.result or {})
    uploaded = fmt.plural(result.uploaded_files, "file")
    compared = "every file" if result.compared == "all" else fmt.plural(result.compared_files or 0, "file")
    repaired = f" {fmt.plural(result.repaired_files, 'damaged file')} in the bucket replaced." \
        if result.repaired_files else ""
    return JobOutcome(f"Mirrored: {uploaded} uploaded ({fmt.human_size(result.uploaded_bytes)}), "
                      f"{result.deleted_files} deleted; {compared} compared with the bucket.{repaired}")
