"""The records of API version 1 (docs/api.md, "Records" and "Methods"): the overview, the job
record, progress, the problem, the restore plan, an error's data, and the answers of the methods
that have one of their own (ping, config, configure, cancel, the keys, the mirror's), as typed
dataclasses. Those of looking at snapshots are in snapshot_records.py.

Fields a reader is not shown are nil on the wire and None here (docs/api.md, "What a reader
sees"), so every such field is optional. A kind, trigger, state or code this client does not
know stays a plain string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backupctl.protocol import ErrorCode, JobKind, JobState, ProblemCode, Trigger
from backupctl.wire_record import RecordError, WireRecord, sometimes

__all__ = [
    "CancelResult", "CheckResult", "Configuration", "ConfigureResult",
    "ErrorData", "JobError", "JobRecord", "JobWithLog", "LastCheck", "LogLine",
    "MirrorConfig", "MirrorOffResult", "MirrorOverview", "MirrorResult", "MirrorSetupResult", "NotifyHealth",
    "Overview", "PathSample", "Ping", "Problem", "Progress", "RecordError", "Requester",
    "RestorePlan", "RestoreResult", "Room", "SnapshotResult", "SnapshotSummary", "SshKey",
    "ExportedKey", "Warnings",
]

WirePath = str | bytes  # bytes: a name that is not UTF-8 (docs/api.md, "Path names")


@dataclass(frozen=True)
class SnapshotSummary(WireRecord):
    """The overview's `last_snapshot`, and the `snapshot` of a snapshot job's result."""

    name: str
    time: float
    duration: float
    files: int
    original_size: int
    deduplicated_size: int


@dataclass(frozen=True)
class Problem(WireRecord):
    """What is wrong (the overview's `problem`, a mirror's `last_error`); cleared by the next success."""

    code: ErrorCode | ProblemCode | str
    message: str
    since: float
    last_success: float | None = sometimes()  # overdue: the last snapshot that succeeded, if any
    line: int | None = sometimes()  # config_unreadable: where in the settings file
    column: int | None = sometimes()


@dataclass(frozen=True)
class LastCheck(WireRecord):
    time: float
    ok: bool
    message: str


@dataclass(frozen=True)
class NotifyHealth(WireRecord):
    ok: bool
    last_error: str | None
    last_sent: float | None


@dataclass(frozen=True)
class MirrorOverview(WireRecord):
    location: str
    state: str
    last_success: float | None
    snapshots_not_off_site: int
    bytes_waiting: int | None = None
    uploaded_bytes: int = 0
    last_verified: float | None = None
    last_error: Problem | None = None


@dataclass(frozen=True)
class Progress(WireRecord):
    """A job's latest progress; which fields it has depends on the kind of job and its step."""

    files: int | None = sometimes()
    total_files: int | None = sometimes()
    original_size: int | None = sometimes()
    total_size: int | None = sometimes()
    deduplicated_size: int | None = sometimes()
    path: WirePath | None = sometimes()
    elapsed: float | None = sometimes()
    percent: float | None = sometimes()
    eta: float | None = sometimes()
    expected_size: int | None = sometimes()
    more_than_expected: bool | None = sometimes()
    step: str | None = sometimes()
    repository: str | None = sometimes()
    location: str | None = sometimes()
    bytes: int | None = sometimes()
    total_bytes: int | None = sometimes()


@dataclass(frozen=True)
class ErrorData(WireRecord):
    """An error's details (docs/api.md, "Errors"): which apply depends on its code."""

    param: str | None = sometimes()  # invalid_params, not_configured: the option
    job: JobRecord | None = sometimes()  # busy: the running job; nil for a connection limit
    connections: int | None = sometimes()
    uid: int | None = sometimes()
    borg_msgid: str | None = sometimes()
    exit_code: int | None = sometimes()
    last_lines: list[str] | None = sometimes()
    reason: str | None = sometimes()  # an SSH failure, as the daemon's own ssh found it
    ssh: list[str] | None = sometimes()
    hook: str | None = sometimes()
    missing: list[WirePath] | None = sometimes()  # not_found of a restore: the paths the snapshot lacks
    mount_point: str | None = sometimes()  # disk_full of a restore
    needed: int | None = sometimes()
    free: int | None = sometimes()
    foreign: list[str] | None = sometimes()  # prune_refused
    would_prune: int | None = sometimes()
    unreadable: list[str] | None = sometimes()


@dataclass(frozen=True)
class JobError(WireRecord):
    """Why a job failed or was cancelled: an error as docs/api.md, "Errors", describes it."""

    code: ErrorCode | str
    message: str
    data: ErrorData | None = sometimes()


@dataclass(frozen=True)
class Requester(WireRecord):
    uid: int
    pid: int
    command: str


@dataclass(frozen=True)
class JobRecord(WireRecord):
    """A job as `jobs`, the notifications and the overview carry it; `result` depends on the kind."""

    id: str
    kind: JobKind | str
    trigger: Trigger | str
    state: JobState | str
    started: float
    finished: float | None = None
    progress: Progress = field(default_factory=Progress)
    result: Any = None
    error: JobError | None = None
    requested_by: Requester | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class LogLine(WireRecord):
    time: float
    level: str
    message: str


@dataclass(frozen=True)
class JobWithLog(JobRecord):
    """The answer of `job`: the record with its log (None for a reader)."""

    log: list[LogLine] | None = field(kw_only=True)


@dataclass(frozen=True)
class SnapshotResult(WireRecord):
    snapshot: SnapshotSummary | None = None
    warnings: list[str] | None = None
    warning_count: int = 0


@dataclass(frozen=True)
class Warnings(WireRecord):
    """What borg warned about, in the result of a snapshot or a configure: the first warnings
    (None for a reader) and how many there were in all."""

    warnings: list[str] | None = sometimes()
    warning_count: int | None = sometimes()


@dataclass(frozen=True)
class CheckResult(WireRecord):
    ok: bool = True
    errors: list[str] | None = None


@dataclass(frozen=True)
class RestoreResult(WireRecord):
    snapshot: str | None = None
    targets: list[WirePath] | None = None
    files: int = 0
    bytes: int | None = None
    not_restored: int = 0
    not_restored_paths: list[WirePath] | None = sometimes()


@dataclass(frozen=True)
class MirrorResult(WireRecord):
    uploaded_bytes: int = 0
    uploaded_files: int = 0
    deleted_files: int = 0
    compared: str | None = None  # "changed" or "all"
    compared_files: int | None = None
    repaired_files: int = 0


@dataclass(frozen=True)
class PathSample(WireRecord):
    """How many paths a restore would write, replace, remove or keep, and the first of them."""

    count: int = 0
    paths: list[WirePath] | None = None


@dataclass(frozen=True)
class Room(WireRecord):
    """Per file system: the bytes a restore writes there, and the bytes free."""

    mount_point: str | None
    needed: int
    free: int


@dataclass(frozen=True)
class RestorePlan(WireRecord):
    """The result of a restore's dry run: what a restore would change."""

    snapshot: str
    targets: list[WirePath] | None = None
    written: PathSample = field(default_factory=PathSample)
    replaced: PathSample = field(default_factory=PathSample)
    removed: PathSample = field(default_factory=PathSample)
    kept: PathSample = field(default_factory=PathSample)
    unchanged: int = 0
    bytes: int | None = None
    space: list[Room] = field(default_factory=list)
    dry_run: bool = True


@dataclass(frozen=True)
class Overview(WireRecord):
    """The result of `status` and the param of `status.changed`."""

    state: str
    repository: str | None = None
    schedule: str | None = None
    automatic: bool = False
    next_run: float | None = None
    last_snapshot: SnapshotSummary | None = None
    snapshot_count: int = 0
    total_size: int | None = None
    file_count: int = 0
    problem: Problem | None = None
    last_check: LastCheck | None = None
    host_key: str | None = None
    retention: str | None = None
    local_size: int | None = None
    mirror: MirrorOverview | None = None
    notify: NotifyHealth | None = None
    job: JobRecord | None = None


@dataclass(frozen=True)
class Ping(WireRecord):
    version: str
    api: int


@dataclass(frozen=True)
class CancelResult(WireRecord):
    """The job's state when `cancel` was asked: running means it is being cancelled."""

    state: JobState | str


@dataclass(frozen=True)
class ConfigureResult(WireRecord):
    created: bool
    snapshot_count: int
    warnings: list[str] | None = sometimes()  # the sources may not fit beside a local repository


@dataclass(frozen=True)
class ExportedKey(WireRecord):
    """The answer of `export_key`: `note` is text for people that ends with the key."""

    repository: str
    encryption: str
    key: str
    note: str


@dataclass(frozen=True)
class SshKey(WireRecord):
    public_key: str
    authorized_keys: str


@dataclass(frozen=True)
class MirrorSetupResult(WireRecord):
    """The answer of `configure_mirror`."""

    location: str
    taken_over: bool


@dataclass(frozen=True)
class MirrorOffResult(WireRecord):
    location: str | None


@dataclass(frozen=True)
class MirrorConfig(WireRecord):
    """The configuration's `mirror`: never the secret; `access_key_id` is None for a reader."""

    provider: str
    bucket: str
    prefix: str
    region: str | None
    access_key_id: str | None
    secret_set: bool


@dataclass(frozen=True)
class Configuration(WireRecord):
    """The answer of `config` and `change`: `sources` and `exclude` are None for a reader."""

    repository: str | None
    passphrase_set: bool
    sources: list[str] | None
    exclude: list[str] | None
    schedule: str
    keep: dict[str, int]
    encryption: str
    compression: str
    remote_path: str | None
    host_key: str | None
    append_only: bool
    upload_limit: int | None
    mirror: MirrorConfig | None = None
