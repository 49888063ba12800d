"""The overview (`status`, `watch`) and the off-site mirror, as text."""

from __future__ import annotations

from backupctl.records import JobRecord, LastCheck, MirrorOverview, NotifyHealth, Overview, Problem, SnapshotSummary
from backupctl.render import text as fmt
from backupctl.render.jobs import job_kind
from backupctl.render.progress import progress_line


def describe_overview(overview: Overview, now: float, width: int = 100) -> str:
    pairs = [("State", overview.state)]
    if overview.state == "unconfigured":
        text = fmt.fields(pairs)
        return text + "\nBackups are not configured: run `backupctl configure REPOSITORY` to set them up."
    pairs += [
        ("Repository", str(overview.repository)),
        ("Automatic", describe_automatic(overview, now)),
        ("Last snapshot", describe_last_snapshot(overview.last_snapshot, now)),
        ("Snapshots", f"{overview.snapshot_count:,}"),
        ("Total size", fmt.human_size(overview.total_size)),
        ("Files", f"{overview.file_count:,}"),
        ("Problem", describe_problem(overview.problem, now)),
    ]
    if overview.sent("last_check"):
        pairs.append(("Last check", describe_last_check(overview.last_check, now)))
    if overview.retention:
        pairs.append(("Retention", overview.retention))
    if overview.host_key:
        pairs.append(("Host key", overview.host_key))
    if overview.notify:
        pairs.append(("Notifications", describe_notify(overview.notify, now)))
    if overview.local_size is not None:
        pairs.append(("On this disk", fmt.human_size(overview.local_size)))
    if overview.mirror:
        pairs.append(("Off-site", describe_off_site(overview.mirror, now)))
    if overview.job:
        pairs.append(("Running", describe_running_job(overview.job, now, width - 16)))
    return fmt.fields(pairs)


def describe_off_site(mirror: MirrorOverview, now: float) -> str:
    text = f"{mirror.location}, {mirror.state.replace('_', ' ')}"
    if mirror.last_success:
        text += f", copied {fmt.relative_time(mirror.last_success, now)}"
    if mirror.snapshots_not_off_site:
        text += f", {fmt.plural(mirror.snapshots_not_off_site, 'snapshot')} not yet"
    return text


def describe_automatic(overview: Overview, now: float) -> str:
    schedule = overview.schedule
    text = ("on" if overview.automatic else "off") + (f" ({schedule})" if schedule else "")
    next_run = overview.next_run
    if overview.automatic and next_run is not None:
        text += f", next snapshot {fmt.relative_time(next_run, now)} ({fmt.timestamp(next_run)})"
    return text


def describe_last_snapshot(snapshot: SnapshotSummary | None, now: float) -> str:
    if not snapshot:
        return "none yet"
    when = snapshot.time
    return (
        f"{fmt.relative_time(when, now)} ({fmt.timestamp(when)}), took {fmt.duration(snapshot.duration)}\n"
        f"{snapshot.name}\n"
        f"{fmt.plural(snapshot.files or 0, 'file')}, "
        f"{fmt.human_size(snapshot.original_size)} original, "
        f"{fmt.human_size(snapshot.deduplicated_size)} new"
    )


def describe_problem(problem: Problem | None, now: float) -> str:
    if not problem:
        return "none"
    return f"{problem.code}: {problem.message} (since {fmt.relative_time(problem.since, now)})"


def describe_notify(notify: NotifyHealth, now: float) -> str:
    sent = f"last sent {fmt.relative_time(notify.last_sent, now)}" if notify.last_sent else "none sent yet"
    if notify.ok:
        return f"working, {sent}"
    return f"failing: {notify.last_error} ({sent})"


def describe_last_check(check: LastCheck | None, now: float) -> str:
    if not check:
        return "never"
    return f"{fmt.relative_time(check.time, now)}: {check.message}"


def describe_running_job(job: JobRecord, now: float, width: int) -> str:
    heading = f"{job_kind(job)} job {job.id} ({job.trigger}), started {fmt.relative_time(job.started, now)}"
    line = progress_line(job.progress, max(width, 40))
    return f"{heading}\n{line}" if line else heading


def describe_live_overview(overview: Overview, path: str, now: float, width: int) -> str:
    heading = f"backupd at {path}, {fmt.clock(now)} (Ctrl-C to stop)"
    pairs = [("State", overview.state)]
    if overview.state != "unconfigured":
        job = overview.job
        last = (describe_last_snapshot(overview.last_snapshot, now).splitlines() or [""])[0]
        pairs += [
            ("Job", describe_running_job(job, now, width - 16) if job else "none running"),
            ("Automatic", describe_automatic(overview, now)),
            ("Last snapshot", last),
            ("Snapshots", f"{overview.snapshot_count:,}, {fmt.human_size(overview.total_size)}"),
            ("Problem", describe_problem(overview.problem, now)),
        ]
    if overview.notify and not overview.notify.ok:
        pairs.append(("Notifications", describe_notify(overview.notify, now)))
    return heading + "\n" + fmt.fields(pairs)


def describe_mirror(mirror: MirrorOverview | None) -> str:
    if mirror is None:
        return "No off-site mirror (backupctl mirror set PROVIDER BUCKET --key-id ID)."
    lines = [f"Mirror:  {mirror.location} ({mirror.state.replace('_', ' ')})"]
    if mirror.last_success:
        lines.append(f"Last copy: {fmt.timestamp(mirror.last_success)}")
    waiting = mirror.bytes_waiting
    lines.append(f"Not off-site yet: {fmt.plural(mirror.snapshots_not_off_site, 'snapshot')}"
                 + (f", {fmt.human_size(waiting)}" if waiting is not None else ""))
    if mirror.last_error:
        lines.append(f"Last error: {mirror.last_error.code}: {mirror.last_error.message}")
    return "\n".join(lines)
