"""The overview (`status`, `watch`) and the off-site mirror, as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backupctl.render import text as fmt
from backupctl.render.jobs import job_kind
from backupctl.render.progress import progress_line


def describe_overview(overview: Mapping[str, Any], now: float, width: int = 100) -> str:
    pairs = [("State", str(overview.get("state")))]
    if overview.get("state") == "unconfigured":
        text = fmt.fields(pairs)
        return text + "\nBackups are not configured: run `backupctl configure REPOSITORY` to set them up."
    pairs += [
        ("Repository", str(overview.get("repository"))),
        ("Automatic", describe_automatic(overview, now)),
        ("Last snapshot", describe_last_snapshot(overview.get("last_snapshot"), now)),
        ("Snapshots", f"{overview.get('snapshot_count', 0):,}"),
        ("Total size", fmt.human_size(overview.get("total_size"))),
        ("Files", f"{overview.get('file_count', 0):,}"),
        ("Problem", describe_problem(overview.get("problem"), now)),
    ]
    if "last_check" in overview:
        pairs.append(("Last check", describe_last_check(overview.get("last_check"), now)))
    if overview.get("retention"):
        pairs.append(("Retention", str(overview["retention"])))
    if overview.get("host_key"):
        pairs.append(("Host key", str(overview["host_key"])))
    if overview.get("notify"):
        pairs.append(("Notifications", describe_notify(overview["notify"], now)))
    if overview.get("local_size") is not None:
        pairs.append(("On this disk", fmt.human_size(overview["local_size"])))
    if overview.get("mirror"):
        pairs.append(("Off-site", describe_off_site(overview["mirror"], now)))
    job = overview.get("job")
    if job:
        pairs.append(("Running", describe_running_job(job, now, width - 16)))
    return fmt.fields(pairs)


def describe_off_site(mirror: Mapping[str, Any], now: float) -> str:
    text = f"{mirror.get('location')}, {mirror.get('state')}"
    if mirror.get("last_success"):
        text += f", copied {fmt.relative_time(mirror['last_success'], now)}"
    waiting = mirror.get("snapshots_not_off_site") or 0
    if waiting:
        text += f", {fmt.plural(waiting, 'snapshot')} not yet"
    return text


def describe_automatic(overview: Mapping[str, Any], now: float) -> str:
    schedule = overview.get("schedule")
    text = ("on" if overview.get("automatic") else "off") + (f" ({schedule})" if schedule else "")
    next_run = overview.get("next_run")
    if overview.get("automatic") and next_run is not None:
        text += f", next snapshot {fmt.relative_time(next_run, now)} ({fmt.timestamp(next_run)})"
    return text


def describe_last_snapshot(snapshot: Mapping[str, Any] | None, now: float) -> str:
    if not snapshot:
        return "none yet"
    when = snapshot.get("time")
    return (
        f"{fmt.relative_time(when, now)} ({fmt.timestamp(when)}), took {fmt.duration(snapshot.get('duration'))}\n"
        f"{snapshot.get('name')}\n"
        f"{fmt.plural(snapshot.get('files') or 0, 'file')}, "
        f"{fmt.human_size(snapshot.get('original_size'))} original, "
        f"{fmt.human_size(snapshot.get('deduplicated_size'))} new"
    )


def describe_problem(problem: Mapping[str, Any] | None, now: float) -> str:
    if not problem:
        return "none"
    return f"{problem.get('code')}: {problem.get('message')} (since {fmt.relative_time(problem.get('since'), now)})"


def describe_notify(notify: Mapping[str, Any], now: float) -> str:
    last_sent = notify.get("last_sent")
    sent = f"last sent {fmt.relative_time(last_sent, now)}" if last_sent else "none sent yet"
    if notify.get("ok"):
        return f"working, {sent}"
    return f"failing: {notify.get('last_error')} ({sent})"


def describe_last_check(check: Mapping[str, Any] | None, now: float) -> str:
    if not check:
        return "never"
    return f"{fmt.relative_time(check.get('time'), now)}: {check.get('message')}"


def describe_running_job(job: Mapping[str, Any], now: float, width: int) -> str:
    heading = (
        f"{job_kind(job)} job {job.get('id')} ({job.get('trigger')}), "
        f"started {fmt.relative_time(job.get('started'), now)}"
    )
    line = progress_line(job.get("progress"), max(width, 40))
    return f"{heading}\n{line}" if line else heading


def describe_live_overview(overview: Mapping[str, Any], path: str, now: float, width: int) -> str:
    heading = f"backupd at {path}, {fmt.clock(now)} (Ctrl-C to stop)"
    pairs = [("State", str(overview.get("state")))]
    if overview.get("state") != "unconfigured":
        job = overview.get("job")
        last = (describe_last_snapshot(overview.get("last_snapshot"), now).splitlines() or [""])[0]
        pairs += [
            ("Job", describe_running_job(job, now, width - 16) if job else "none running"),
            ("Automatic", describe_automatic(overview, now)),
            ("Last snapshot", last),
            ("Snapshots", f"{overview.get('snapshot_count', 0):,}, {fmt.human_size(overview.get('total_size'))}"),
            ("Problem", describe_problem(overview.get("problem"), now)),
        ]
    notify = overview.get("notify")
    if notify and not notify.get("ok"):
        pairs.append(("Notifications", describe_notify(notify, now)))
    return heading + "\n" + fmt.fields(pairs)


def describe_mirror(mirror: Mapping[str, Any] | None) -> str:
    if mirror is None:
        return "No off-site mirror (backupctl mirror set PROVIDER BUCKET --key-id ID)."
    lines = [f"Mirror:  {mirror['location']} ({mirror['state']})"]
    if mirror.get("last_success"):
        lines.append(f"Last copy: {fmt.timestamp(mirror['last_success'])}")
    waiting = mirror.get("bytes_waiting")
    lines.append(f"Not off-site yet: {fmt.plural(mirror.get('snapshots_not_off_site', 0), 'snapshot')}"
                 + (f", {fmt.human_size(waiting)}" if waiting is not None else ""))
    if mirror.get("last_error"):
        lines.append(f"Last error: {mirror['last_error']['code']}: {mirror['last_error']['message']}")
    return "\n".join(lines)
