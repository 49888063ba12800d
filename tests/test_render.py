"""backupctl's text for people, from records alone: no daemon, no terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from backupctl.protocol import ErrorCode, JobKind, JobState, Notification, ProblemCode, RpcError, Trigger
from backupctl.records import (
    JobError,
    JobRecord,
    JobWithLog,
    LogLine,
    MirrorOverview,
    NotifyHealth,
    Overview,
    PathSample,
    Problem,
    Progress,
    RestorePlan,
    Room,
    SnapshotSummary,
)
from backupctl.snapshot_records import Change, ChangeCounts, ChangesPage, FolderEntry, FolderPage, PathVersions, Version
from backupctl.render.browse import describe_changes, describe_listing, describe_versions
from backupctl.render.config import describe_reset
from backupctl.render.errors import error_details
from backupctl.render.events import describe_notification
from backupctl.render.jobs import describe_job_with_log, describe_jobs, describe_snapshot_result, warning_lines
from backupctl.render.overview import describe_live_overview, describe_mirror, describe_overview
from backupctl.render.restore import describe_restore_plan

NOW = 1_780_000_000.0
HOUR = 3600.0


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


LAST = SnapshotSummary(name="edgebox-2026-05-28T19:26:40Z", time=NOW - HOUR, duration=42.0, files=1234,
                       original_size=3 * 1024**3, deduplicated_size=5 * 1024**2)


def snapshot_job(**changes: object) -> JobRecord:
    fields = dict(id="12", kind=JobKind.SNAPSHOT, trigger=Trigger.SCHEDULE, state=JobState.SUCCEEDED,
                  started=NOW - 100, finished=NOW - 40, result={"snapshot": LAST.to_wire(), "warnings": [],
                                                                 "warning_count": 0})
    return JobRecord(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_overview_of_a_box_with_a_problem_a_mirror_and_a_running_job() -> None:
    overview = Overview(
        state="running", repository="ssh://backup@nas/./edgebox", schedule="daily 03:00", automatic=True,
        next_run=NOW + 2 * HOUR, last_snapshot=LAST, snapshot_count=1234, total_size=40 * 1024**3, file_count=1234,
        problem=Problem(code=ErrorCode.REPOSITORY_LOCKED, message="The repository is locked", since=NOW - 600),
        last_check=None, retention="old snapshots are pruned after automatic ones",
        notify=NotifyHealth(ok=False, last_error="webhook: 500", last_sent=None),
        mirror=MirrorOverview(location="s3://bucket/edgebox", state="behind", last_success=NOW - 86400,
                              snapshots_not_off_site=2),
        job=JobRecord(id="13", kind=JobKind.CHECK, trigger=Trigger.MANUAL, state=JobState.RUNNING, started=NOW - 30,
                      progress=Progress(percent=50.0, step="checking segments")),
    )
    lines = describe_overview(overview, NOW).splitlines()
    assert lines == [
        "State:         running",
        "Repository:    ssh://backup@nas/./edgebox",
        "Automatic:     on (daily 03:00), next snapshot in 2 hours (2026-05-28 22:26:40 UTC)",
        "Last snapshot: 1 hour ago (2026-05-28 19:26:40 UTC), took 42 s",
        "               edgebox-2026-05-28T19:26:40Z",
        "               1,234 files, 3.0 GiB original, 5.0 MiB new",
        "Snapshots:     1,234",
        "Total size:    40.0 GiB",
        "Files:         1,234",
        "Problem:       repository_locked: The repository is locked (since 10 minutes ago)",
        "Last check:    never",
        "Retention:     old snapshots are pruned after automatic ones",
        "Notifications: failing: webhook: 500 (none sent yet)",
        "Off-site:      s3://bucket/edgebox, behind, copied 1 day ago, 2 snapshots not yet",
        "Running:       check job 13 (manual), started 30 seconds ago",
        "               [##########----------]  50.0%  checking segments",
    ]


def test_an_overview_from_an_older_daemon_without_last_check_leaves_that_line_out() -> None:
    overview = Overview.from_wire({"state": "idle", "repository": "/srv/repo", "snapshot_count": 0})
    text = describe_overview(overview, NOW)
    assert "Last check" not in text
    assert "Last snapshot: none yet" in text


def test_the_overview_when_unconfigured_says_what_to_run() -> None:
    assert describe_overview(Overview(state="unconfigured"), NOW) == (
        "State: unconfigured\n"
        "Backups are not configured: run `backupctl configure REPOSITORY` to set them up.")


def test_the_live_overview_shows_notifications_only_when_they_fail() -> None:
    overview = Overview(state="idle", repository="/srv/repo", snapshot_count=3, total_size=2048,
                        notify=NotifyHealth(ok=True, last_error=None, last_sent=NOW - 60))
    text = describe_live_overview(overview, "/run/backupd/backupd.sock", NOW, 100)
    assert text.splitlines()[0] == "backupd at /run/backupd/backupd.sock, 20:26:40 UTC (Ctrl-C to stop)"
    assert "Snapshots:     3, 2.0 KiB" in text and "Job:           none running" in text
    assert "Notifications" not in text


def test_jobs_mark_dry_runs_and_warnings_and_name_the_error() -> None:
    records = [
        snapshot_job(id="14", result={"snapshot": LAST.to_wire(), "warnings": None, "warning_count": 3}),
        JobRecord(id="13", kind=JobKind.RESTORE, trigger=Trigger.MANUAL, state=JobState.FAILED, started=NOW - 200,
                  finished=NOW - 190, dry_run=True, error=JobError(code=ErrorCode.NOT_FOUND, message="no such")),
    ]
    assert describe_jobs(records, NOW).splitlines() == [
        "ID  KIND               TRIGGER   STATE       STARTED                  DURATION  ERROR",
        "14  snapshot           schedule  succeeded!  2026-05-28 20:25:00 UTC  1 min",
        "13  restore (dry run)  manual    failed      2026-05-28 20:23:20 UTC  10 s      not_found",
        "! with warnings: `backupctl log JOB_ID` shows them",
    ]
    assert describe_jobs([], NOW) == "No jobs yet."


def test_a_job_with_its_log_and_a_readers_view_of_it() -> None:
    job = snapshot_job(result={"snapshot": LAST.to_wire(), "warnings": ["a: Permission denied"], "warning_count": 1})
    admin = JobWithLog(**{name: getattr(job, name) for name in JobRecord.__dataclass_fields__
                          if name not in ("absent", "extra")},
                       log=[LogLine(time=NOW - 99, level="info", message="started"),
                            LogLine(time=NOW - 50, level="warning", message="a: Permission denied\nsecond line")])
    text = describe_job_with_log(admin, NOW)
    assert "Job:      snapshot job 12 (schedule)" in text
    assert "Snapshot: edgebox-2026-05-28T19:26:40Z: 1,234 files, 3.0 GiB original, 5.0 MiB new" in text
    assert "Warnings: borg reported 1 warning (1 listed in the result)" in text
    assert text.endswith("Log (2 lines, 1 warning):\n"
                         "  2026-05-28 20:25:01 UTC  info     started\n"
                         "  2026-05-28 20:25:50 UTC  warning  a: Permission denied\n"
                         "                                    second line")
    reader = JobWithLog.from_wire({**job.to_wire(), "log": None})
    assert describe_job_with_log(reader, NOW).endswith("Log: shown to admins only")


def test_a_finished_snapshot_shows_its_first_warnings_and_how_to_see_the_rest() -> None:
    warnings = [f"/data/file{n}: read: [Errno 5] Input/output error" for n in range(12)]
    lines = warning_lines(snapshot_job(id="42", result={"warnings": warnings, "warning_count": 150}))
    assert lines[:10] == [f"warning: {warning}" for warning in warnings[:10]]
    assert lines[10:] == ["warning: ... and 140 more: `backupctl log 42` lists them"]
    assert warning_lines(snapshot_job(id="1", result={"warnings": ["one"]})) == ["warning: one"]
    assert warning_lines(snapshot_job(id="2", result=None)) == []
    assert warning_lines(snapshot_job(result={"warnings": None, "warning_count": 25})) == []


def test_a_finished_snapshot_in_one_sentence() -> None:
    assert describe_snapshot_result(snapshot_job()).text == (
        "Snapshot edgebox-2026-05-28T19:26:40Z taken in 1 min: 1,234 files, 3.0 GiB original, 5.0 MiB new.")


def test_a_restore_plan_as_an_admin_sees_it_says_when_there_is_no_room() -> None:
    plan = RestorePlan(snapshot="edgebox-1", targets=["/srv/data", b"/srv/caf\xe9"],
                       written=PathSample(count=2, paths=["/srv/data/a", "/srv/data/b"]),
                       replaced=PathSample(count=12, paths=[f"/srv/data/r{index}" for index in range(12)]),
                       unchanged=7, bytes=3 * 1024**2,
                       space=[Room(mount_point="/srv", needed=3 * 1024**2, free=1024**2)])
    text = describe_restore_plan(plan, NOW - HOUR, NOW)
    assert "Snapshot:  edgebox-1, taken 2026-05-28 19:26:40 UTC (1 hour ago)" in text
    assert "Targets:   /srv/data\n           /srv/caf\\xe9" in text
    assert "Replaced:  12 files changed since the snapshot" in text
    assert "Room:      1.0 MiB free on /srv: NOT ENOUGH, nothing will be restored" in text
    assert text.endswith("Files to replace:\n" + "".join(f"  /srv/data/r{index}\n" for index in range(10))
                         + "  ... and 2 more")


def test_a_restore_plan_as_a_reader_sees_it_has_counts_and_no_paths() -> None:
    plan = RestorePlan.from_wire({
        "dry_run": True, "snapshot": "edgebox-1", "targets": None, "written": {"count": 0, "paths": None},
        "replaced": {"count": 0, "paths": None}, "removed": {"count": 3, "paths": None},
        "kept": {"count": 0, "paths": None}, "unchanged": 5, "bytes": 100,
        "space": [{"mount_point": None, "needed": 100, "free": 10_000}]})
    text = describe_restore_plan(plan, None, NOW)
    assert "Removed:   3 files not in the snapshot" in text
    assert "Room:      9.8 KiB free on its file system" in text
    assert text.endswith("Files to remove:\n  ... and 3 more")


def test_notifications_one_line_each() -> None:
    progress = snapshot_job(state=JobState.RUNNING, finished=None, result=None,
                            progress=Progress(files=10, original_size=2048, deduplicated_size=0, path="srv/a"))
    failed = snapshot_job(state=JobState.FAILED, result=None,
                          error=JobError(code=ErrorCode.PASSPHRASE_WRONG, message="wrong passphrase"))
    changed = Overview(state="idle", snapshot_count=4, last_snapshot=LAST,
                       problem=Problem(code=ProblemCode.OVERDUE, message="late", since=NOW, last_success=None))
    lines = [describe_notification(Notification(method, record.to_wire()), NOW)
             for method, record in (("job.progress", progress), ("job.finished", failed), ("status.changed", changed))]
    assert lines == [
        "20:26:40 UTC  job.progress    snapshot job 12: 10 files  2.0 KiB read  0 B new  srv/a",
        "20:26:40 UTC  job.finished    snapshot job 12 failed after 1 min: passphrase_wrong: wrong passphrase",
        "20:26:40 UTC  status.changed  idle, 4 snapshots, last 1 hour ago, problem overdue",
    ]


def test_the_mirror_shown_alone() -> None:
    mirror = MirrorOverview(location="b2://bucket/box", state="failed", last_success=None, snapshots_not_off_site=1,
                            bytes_waiting=4096, last_error=Problem(code=ErrorCode.AUTH_FAILED, message="refused",
                                                                   since=NOW))
    assert describe_mirror(mirror) == ("Mirror:  b2://bucket/box (failed)\n"
                                       "Not off-site yet: 1 snapshot, 4.0 KiB\n"
                                       "Last error: auth_failed: refused")
    assert describe_mirror(None).startswith("No off-site mirror")


def test_inside_a_snapshot_listings_versions_and_changes() -> None:
    entries = [FolderEntry(name="data", kind="folder", size=0, mode="drwxr-xr-x", user="root", group="root", uid=0,
                           gid=0, mtime=NOW, target=None),
               FolderEntry(name=None, kind="file", size=10, mode="", user=None, group=None, uid=None, gid=None,
                           mtime=None, target=None)]
    first = FolderPage(snapshot="edgebox-1", path="/srv", kind="folder", entries=entries[:1], total=3, cursor="64")
    assert describe_listing(first, entries, more=True).splitlines() == [
        "edgebox-1:/srv  (3 entries)",
        "MODE        OWNER      SIZE  MODIFIED                 NAME",
        "drwxr-xr-x  root:root        2026-05-28 20:26:40 UTC  data/",
        "d?????????             10 B                           -",
        "... 1 more (--limit)",
    ]
    alone = FolderPage(snapshot="edgebox-1", path=None, kind="file", entries=entries[1:], total=1, cursor=None)
    assert describe_listing(alone, entries[1:], more=False).splitlines()[0] == "edgebox-1:-  (1 entry)"
    found = PathVersions(path="/srv/a", versions=[Version(snapshot="edgebox-1", time=NOW, kind="file", size=5,
                                                          mtime=NOW, mode="-rw-r--r--")])
    assert describe_versions(found).splitlines()[0] == "/srv/a: in 1 snapshot"
    added = Change(path="/srv/b", change="added", kind="file", size=5, old_size=None, what=[])
    page = ChangesPage(from_snapshot="edgebox-1", to=None, changes=[added], total=1,
                       counts=ChangeCounts(added=1, removed=0, modified=0), cursor=None)
    assert describe_changes(page, page.changes, more=False) == (
        "edgebox-1 -> the files now: 1 added, 0 removed, 0 modified\n"
        "   SIZE  WHAT  PATH\n"
        "+  5 B         /srv/b")


def test_an_errors_details_say_what_to_do_next() -> None:
    running = {"id": "4", "kind": "check", "trigger": "schedule", "state": "running", "started": NOW}
    assert error_details(RpcError(ErrorCode.BUSY, "busy", {"job": running})) == ["  (running: check job 4)"]
    assert error_details(RpcError(ErrorCode.INVALID_PARAMS, "bad", {"param": "limit"})) == ["  (option: limit)"]
    unreachable = {"borg_msgid": None, "exit_code": 2, "last_lines": ["a", "b", "c", "d"], "reason": "port_refused",
                   "ssh": ["ssh: connect to host box port 22: Connection refused"]}
    assert error_details(RpcError(ErrorCode.REPOSITORY_UNREACHABLE, "no", unreachable)) == [
        "  borg: b", "  borg: c", "  borg: d", "  ssh: ssh: connect to host box port 22: Connection refused"]
    assert error_details(RpcError(ErrorCode.NOT_CONFIGURED, "no", {"param": "sources"}))[0].startswith("  Name the")


def test_details_of_a_shape_this_client_cannot_read_are_left_out() -> None:
    assert error_details(RpcError(ErrorCode.BORG_FAILED, "failed", {"last_lines": "not a list"})) == []
    assert error_details(RpcError(ErrorCode.NOT_CONFIGURED, "no", {"ssh": 3})) == [
        "  Run `backupctl configure REPOSITORY` first (see backupctl configure --help)."]


def test_the_reset_confirmation_names_every_secret_it_erases_and_what_stays() -> None:
    text = describe_reset("/srv/backups", "s3://edgebox/kitchen")
    for erased in ("passphrase", "SSH key", "bucket's access keys", "local cache"):
        assert erased in text
    assert "The repository at /srv/backups and its snapshots are NOT deleted" in text
    assert "The off-site copy at s3://edgebox/kitchen is NOT deleted either." in text
    assert "off-site copy" not in describe_reset(None)
