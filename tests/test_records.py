"""The typed wire records: read from what a real backupd answers, admins' and readers' views,
and written back to the very same maps."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backupctl.protocol import ErrorCode, JobKind, JobState, ProblemCode, RpcError, Trigger
from backupctl.records import (
    CancelResult,
    CheckResult,
    Configuration,
    ConfigureResult,
    ErrorData,
    JobError,
    JobRecord,
    JobWithLog,
    MirrorOffResult,
    Overview,
    Ping,
    Problem,
    Progress,
    RecordError,
    RestorePlan,
    SnapshotResult,
)
from backupctl.snapshot_records import ChangesPage, FolderPage, PathVersions, SnapshotListed
from tests.conftest import PASSPHRASE, DaemonProcess
from tests.users import NOBODY, call_as_user, copy_client_packages

as_other_users = pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                                    reason="needs root and setpriv to call as another user")


def assert_round_trip(record_type: Any, wire: Any) -> Any:
    record = record_type.from_wire(wire)
    assert record.to_wire() == wire
    return record


@pytest.fixture
def open_daemon(tmp_path: Path, sample_data: Path) -> Iterator[DaemonProcess]:
    """A configured daemon whose socket any user can reach: every other uid is a reader."""
    socket_folder = Path(tempfile.mkdtemp(prefix="backupd-records-"))
    os.chmod(socket_folder, 0o755)
    settings = tmp_path / "open.toml"
    settings.write_text(f'borg_base_dir = "{tmp_path / "base"}"\nsocket_mode = "0666"\n'
                        '[defaults]\nschedule = "manual"\n')
    daemon = DaemonProcess(socket=socket_folder / "backupd.sock", state_dir=tmp_path / "state", settings=settings,
                           log_path=tmp_path / "daemon.log")
    daemon.start()
    with daemon.client() as client:
        client.call("configure", {"repository": str(tmp_path / "repo"), "passphrase": PASSPHRASE,
                                  "sources": [str(sample_data)]})
    yield daemon
    daemon.stop()
    shutil.rmtree(socket_folder, ignore_errors=True)


def work_with_every_kind_of_result(daemon: DaemonProcess, sample_data: Path) -> list[dict[str, Any]]:
    """A snapshot (followed, so its progress notifications arrive), a check, a dry run with
    changes to show, and a restore of one file: the notifications received."""
    (sample_data / "added-since.txt").write_text("new\n")
    with daemon.client() as client:
        client.call("subscribe")
        client.call("snapshot", {"wait": True})
        client.call("check", {"wait": True})
        (sample_data / "added-after-the-snapshot.txt").write_text("to be removed\n")
        client.call("restore", {"dry_run": True, "wait": True})
        client.call("restore", {"paths": [str(sample_data / "added-since.txt")], "wait": True})
        client.set_timeout(1.0)
        received = []
        try:
            for notification in client.events():
                received.append({"method": notification.method, "params": notification.params})
        except TimeoutError:
            pass
    return received


def test_an_admins_records_read_and_written_back_are_the_maps_the_daemon_sent(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    notifications = work_with_every_kind_of_result(configured_daemon, sample_data)
    with configured_daemon.client() as client:
        overview = client.call("status")
        jobs = client.call("jobs", {"limit": 200})
        full = [client.call("job", {"id": job["id"]}) for job in jobs]

    record = assert_round_trip(Overview, overview)
    assert record.last_snapshot is not None and record.last_snapshot.files > 0
    assert record.last_check is not None and record.last_check.ok
    records = [assert_round_trip(JobRecord, job) for job in jobs]
    assert {job.kind for job in records} >= {JobKind.CONFIGURE, JobKind.SNAPSHOT, JobKind.CHECK, JobKind.RESTORE}
    assert {job.state for job in records} == {JobState.SUCCEEDED}
    assert {job.trigger for job in records} == {Trigger.MANUAL}
    with_log = [assert_round_trip(JobWithLog, job) for job in full]
    assert all(job.log for job in with_log)

    by_kind = {(job["kind"], job["dry_run"]): job["result"] for job in jobs}
    snapshot = assert_round_trip(SnapshotResult, by_kind[("snapshot", False)])
    assert snapshot.snapshot is not None and snapshot.snapshot.name == record.last_snapshot.name
    assert assert_round_trip(CheckResult, by_kind[("check", False)]).ok
    plan = assert_round_trip(RestorePlan, by_kind[("restore", True)])
    assert plan.removed.count == 1 and plan.removed.paths == [str(sample_data / "added-after-the-snapshot.txt")]
    assert plan.space and plan.space[0].mount_point

    assert assert_round_trip(ConfigureResult, by_kind[("configure", False)]).snapshot_count == 0

    progress = [note["params"] for note in notifications if note["method"] == "job.progress"]
    assert {job["kind"] for job in progress} >= {"snapshot", "check"}
    for job in progress:
        assert_round_trip(JobRecord, job)
    for note in notifications:
        assert_round_trip(Overview if note["method"] == "status.changed" else JobRecord, note["params"])


def test_an_admins_answers_read_and_written_back_are_the_maps_the_daemon_sent(
        configured_daemon: DaemonProcess, sample_data: Path) -> None:
    work_with_every_kind_of_result(configured_daemon, sample_data)
    (sample_data / "folder1" / "file1.txt").write_text("changed since\n")
    with configured_daemon.client() as client:
        newest = JobRecord.from_wire(client.call("snapshot", {"wait": True})).result["snapshot"]["name"]
        missing = str(sample_data / "never-there.txt")
        refused = JobRecord.from_wire(client.call("restore", {"paths": [missing], "wait": True}))
        snapshots = client.call("snapshots")
        oldest = snapshots[-1]["name"]
        answers = {
            "ping": client.call("ping"),
            "config": client.call("config"),
            "change": client.call("change", {"schedule": "daily 04:00"}),
            "top": client.call("browse", {"snapshot": newest}),
            "folder": client.call("browse", {"snapshot": newest, "path": str(sample_data), "limit": 2}),
            "file": client.call("browse", {"snapshot": newest, "path": str(sample_data / "added-since.txt")}),
            "versions": client.call("versions", {"path": str(sample_data / "folder1" / "file1.txt")}),
            "between": client.call("compare", {"from": oldest, "to": newest}),
            "now": client.call("compare", {"from": oldest}),
            "cancel": client.call("cancel", {"job": refused.id}),
            "mirror_off": client.call("mirror_off"),
        }
        with pytest.raises(RpcError) as invalid:
            client.call("browse", {"limit": "ten"})

    assert [assert_round_trip(SnapshotListed, snapshot).name for snapshot in snapshots][0] == newest
    assert assert_round_trip(Ping, answers["ping"]).api == 1
    config = assert_round_trip(Configuration, answers["config"])
    assert config.sources == [str(sample_data)] and config.passphrase_set and config.mirror is None
    assert assert_round_trip(Configuration, answers["change"]).schedule == "daily 04:00"
    top = assert_round_trip(FolderPage, answers["top"])
    assert top.path == "/" and [entry.kind for entry in top.entries] == ["folder"] and top.entries[0].mode == ""
    folder = assert_round_trip(FolderPage, answers["folder"])
    assert folder.total > 2 and len(folder.entries) == 2 and folder.cursor is not None
    assert all(entry.mode and entry.user for entry in folder.entries)
    alone = assert_round_trip(FolderPage, answers["file"])
    assert alone.kind == "file" and [entry.name for entry in alone.entries] == ["added-since.txt"]
    versions = assert_round_trip(PathVersions, answers["versions"])
    assert [version.snapshot for version in versions.versions][0] == newest and len(versions.versions) >= 2
    between = assert_round_trip(ChangesPage, answers["between"])
    assert between.from_snapshot == oldest and between.to == newest and between.counts.modified >= 1
    modified = next(change for change in between.changes if change.path == str(sample_data / "folder1" / "file1.txt"))
    assert "content" in modified.what and modified.added_bytes is not None
    now = assert_round_trip(ChangesPage, answers["now"])
    assert now.to is None and now.total == sum((now.counts.added, now.counts.removed, now.counts.modified))
    assert assert_round_trip(CancelResult, answers["cancel"]).state is JobState.FAILED
    assert assert_round_trip(MirrorOffResult, answers["mirror_off"]).location is None
    assert refused.error is not None and refused.error.data is not None
    assert refused.error.data.param == "paths" and refused.error.data.missing == [missing]
    assert assert_round_trip(ErrorData, invalid.value.data).param == "limit"


@as_other_users
def test_a_readers_records_read_and_written_back_are_the_maps_the_daemon_sent(
        open_daemon: DaemonProcess, sample_data: Path) -> None:
    work_with_every_kind_of_result(open_daemon, sample_data)
    packages = copy_client_packages()
    try:
        def read(method: str, params: dict[str, Any] | None = None) -> Any:
            return call_as_user(packages, NOBODY, open_daemon.socket, method, params)["result"]

        overview = read("status")
        jobs = read("jobs", {"limit": 200})
        full = [read("job", {"id": job["id"]}) for job in jobs]
        snapshots = read("snapshots")
        answers = {"ping": read("ping"), "config": read("config"), "top": read("browse"),
                   "now": read("compare", {"from": snapshots[0]["name"]})}
    finally:
        shutil.rmtree(packages)

    assert_round_trip(Overview, overview)
    records = [assert_round_trip(JobRecord, job) for job in jobs]
    dry_run = next(job for job in records if job.dry_run)
    plan = assert_round_trip(RestorePlan, dry_run.result)
    assert plan.targets is None and plan.removed.count == 1 and plan.removed.paths is None
    assert [room.mount_point for room in plan.space] == [None]
    assert all(assert_round_trip(JobWithLog, job).log is None for job in full)
    assert [assert_round_trip(SnapshotListed, snapshot).name for snapshot in snapshots]
    assert assert_round_trip(Ping, answers["ping"]).api == 1
    config = assert_round_trip(Configuration, answers["config"])
    assert config.sources is None and config.exclude is None and config.repository is not None
    top = assert_round_trip(FolderPage, answers["top"])
    assert top.path is None and top.entries and all(entry.name is None for entry in top.entries)
    now = assert_round_trip(ChangesPage, answers["now"])
    assert now.changes and all(change.path is None for change in now.changes)


def test_a_field_a_newer_daemon_adds_is_kept_and_sent_back() -> None:
    wire = {"state": "idle", "repository": "/srv/repo", "snapshot_count": 2, "cloud_cost": {"euros": 3}}
    overview = Overview.from_wire(wire)
    assert overview.snapshot_count == 2
    assert overview.extra == {"cloud_cost": {"euros": 3}}
    assert overview.to_wire() == wire


def test_a_kind_of_job_this_client_does_not_know_stays_a_string() -> None:
    wire = {"id": "7", "kind": "defragment", "trigger": "schedule", "state": "running", "started": 1.5}
    job = JobRecord.from_wire(wire)
    assert job.kind == "defragment" and not isinstance(job.kind, JobKind)
    assert job.trigger is Trigger.SCHEDULE and job.state is JobState.RUNNING
    assert job.to_wire() == wire


def test_codes_are_enum_members() -> None:
    assert Problem.from_wire({"code": "overdue", "message": "m", "since": 1.0}).code is ProblemCode.OVERDUE
    assert Problem.from_wire({"code": "repository_locked", "message": "m", "since": 1}).code \
        is ErrorCode.REPOSITORY_LOCKED
    assert JobError.from_wire({"code": "prune_refused", "message": "m"}).code is ErrorCode.PRUNE_REFUSED


@pytest.mark.parametrize(
    ("record_type", "wire", "where"),
    [
        (Overview, {"state": 3}, "Overview.state: expected str, got int"),
        (Overview, {"state": "idle", "snapshot_count": True}, "Overview.snapshot_count: expected int, got bool"),
        (Overview, {"state": "idle", "last_snapshot": "yesterday"},
         "Overview.last_snapshot: SnapshotSummary: expected a map, got str"),
        (Overview, {"state": "idle", "problem": {"code": "busy", "message": "m"}},
         "Overview.problem: Problem: the field 'since' is missing"),
        (JobRecord, {"id": "1", "kind": "snapshot", "trigger": "manual", "state": "running", "started": 1.0,
                     "progress": {"files": "many"}}, "JobRecord.progress: Progress.files: expected int, got str"),
        (RestorePlan, {"snapshot": "s", "space": [{"mount_point": "/", "needed": 1, "free": None}]},
         "RestorePlan.space[0]: Room.free: expected int, got nil"),
        (Progress, ["files", 3], "Progress: expected a map, got list"),
        (ChangesPage, {"from": 3, "to": None, "changes": [], "total": 0, "cursor": None,
                       "counts": {"added": 0, "removed": 0, "modified": 0}}, "ChangesPage.from: expected str, got int"),
        (ChangesPage, {"to": None}, "ChangesPage: the field 'from' is missing"),
        (Configuration, {"repository": None, "passphrase_set": False, "sources": None, "exclude": None,
                         "schedule": "hourly", "keep": {"daily": "7"}, "encryption": "none", "compression": "lz4",
                         "remote_path": None, "host_key": None, "append_only": False, "upload_limit": None},
         "Configuration.keep.daily: expected int, got str"),
    ],
)
def test_a_wrong_type_is_a_clear_error_naming_the_field(record_type: Any, wire: Any, where: str) -> None:
    with pytest.raises(RecordError) as raised:
        record_type.from_wire(wire)
    assert where in str(raised.value)


def test_a_record_built_in_code_leaves_out_the_fields_that_do_not_apply() -> None:
    assert Progress(step="pruning").to_wire() == {"step": "pruning"}
    assert Progress.from_wire({"step": "pruning"}) == Progress(step="pruning")
    assert Progress(percent=None, eta=None, absent=frozenset(Progress.__dataclass_fields__) - {"percent", "eta"}
                    - {"absent", "extra"}).to_wire() == {"percent": None, "eta": None}
    job = JobRecord(id="3", kind=JobKind.PRUNE, trigger=Trigger.SCHEDULE, state=JobState.RUNNING, started=2.0)
    assert job.to_wire() == {"id": "3", "kind": "prune", "trigger": "schedule", "state": "running", "started": 2.0,
                             "finished": None, "progress": {}, "result": None, "error": None, "requested_by": None,
                             "dry_run": False}
    assert type(job.to_wire()["kind"]) is str
