"""What a caller is shown of the daemon's records: admins see everything; readers see counts,
sizes, times, states and codes, never a path on this box (a file name in a folder the reader
may not be able to list) nor borg's own words, which name such paths.

Every result and notification that carries a job record, the overview, the configuration or
the snapshot list goes out through a View, chosen from the caller's access levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from backupctl.protocol import Notification
from backupd.access import Level


class Shown(StrEnum):
    """What a method's result or a notification's param is, so the view knows what to hide."""

    NOTHING_PRIVATE = "nothing_private"
    OVERVIEW = "overview"
    CONFIG = "config"
    JOB = "job"
    JOBS = "jobs"
    SNAPSHOTS = "snapshots"
    BROWSE = "browse"
    CHANGES = "changes"


NOTIFIED = {
    "job.started": Shown.JOB,
    "job.progress": Shown.JOB,
    "job.finished": Shown.JOB,
    "status.changed": Shown.OVERVIEW,
}

# A reader's sentence for each code: the daemon's and borg's own messages can name paths.
READER_MESSAGES = {
    "invalid_params": "A value given for the job was not acceptable",
    "not_configured": "Backups are not configured",
    "busy": "Another job was running",
    "not_found": "Something the job needed was not found",
    "repository_not_found": "There is no repository at the configured location",
    "repository_exists": "A repository already exists at that location",
    "passphrase_wrong": "The repository's passphrase is wrong",
    "repository_unreachable": "The repository could not be reached",
    "repository_locked": "The repository is locked by another borg process",
    "repository_invalid": "The repository is damaged, or not one this borg can use",
    "auth_failed": "The backup server refused this box's SSH key",
    "host_key_changed": "The backup server's SSH host key is not the recorded one",
    "disk_full": "A disk the backup writes to is full",
    "state_unwritable": "The backup daemon cannot save its state",
    "borg_failed": "borg failed",
    "cancelled": "The job was cancelled",
    "interrupted": "The backup daemon stopped while the job ran",
    "prune_refused": "Old snapshots were not pruned; nothing was deleted",
    "hook_failed": "An operator hook around the job failed",
    "restore_failed": "The restore could not put the snapshot in place",
    "internal": "The backup daemon failed on an internal error",
    "check_failed": "The consistency check found damage in the repository",
    "snapshot_incomplete": "The last snapshot missed files or folders it could not read",
    "config_unreadable": "The settings or the saved configuration could not be read; an administrator must fix them",
    "state_unreadable": "Saved state could not be read; the repository is being read again",
    "restore_incomplete": "A restore interrupted by a crash could not be undone; a person must look",
    "restore_partial": "The last restore could not create some items, such as device nodes",
    "bucket_not_found": "The off-site bucket does not exist",
    "mirror_failed": "Copying the backups off-site failed",
    "mirror_taken_over": "Another box now copies its backups into this off-site prefix; this box stopped copying there",
}
# The same codes, said of the off-site mirror's storage service rather than the SSH server.
MIRROR_READER_MESSAGES = {
    "auth_failed": "The off-site storage service refused the access key",
    "repository_unreachable": "The off-site storage service could not be reached",
    "repository_exists": "The off-site bucket prefix holds another repository's mirror",
}
# Built by the daemon from times only.
MESSAGES_WITHOUT_PATHS = frozenset({"overdue"})
ERROR_DATA_SHOWN = frozenset({"param", "borg_msgid", "exit_code", "hook", "connections", "keep", "reason"})


@dataclass(frozen=True)
class View:
    admin: bool

    def shown(self, kind: Shown, value: Any) -> Any:
        """The value as this caller may see it."""
        if self.admin or value is None:
            return value
        return _READER_VIEWS[kind](value)

    def notification(self, notification: Notification) -> Notification | None:
        """The notification as this subscriber may see it; None for one readers are not sent."""
        if self.admin:
            return notification
        kind = NOTIFIED.get(notification.method)
        if kind is None:
            return None
        return Notification(notification.method, self.shown(kind, notification.params))


def view_for(levels: frozenset[Level]) -> View:
    return View(admin=Level.ADMIN in levels)


def reader_message(code: str) -> str:
    return READER_MESSAGES.get(code, f"Something went wrong ({code})")


def reader_error(error: dict[str, Any]) -> dict[str, Any]:
    code = error.get("code", "")
    shown: dict[str, Any] = {"code": code, "message": reader_message(code)}
    data = {name: value for name, value in (error.get("data") or {}).items() if name in ERROR_DATA_SHOWN}
    if isinstance((error.get("data") or {}).get("job"), dict):
        data["job"] = reader_job(error["data"]["job"])
    if data:
        shown["data"] = data
    return shown


def reader_job(record: dict[str, Any]) -> dict[str, Any]:
    shown = dict(record)
    if record.get("progress"):
        shown["progress"] = _without(record["progress"], "path")
    shown["result"] = _reader_result(record.get("kind", ""), record.get("result"))
    if record.get("error") is not None:
        shown["error"] = reader_error(record["error"])
    if "log" in record:
        shown["log"] = None
    return shown


def _reader_result(kind: str, result: Any) -> Any:
    if result is None:
        return None
    hide = _RESULT_PATHS.get(kind)
    return hide(result) if hide is not None else None


def _reader_restore_result(result: dict[str, Any]) -> dict[str, Any]:
    shown = _without(_without(result, "targets"), "not_restored_paths")
    for changes in ("written", "replaced", "removed", "kept"):
        if isinstance(result.get(changes), dict):
            shown[changes] = _without(result[changes], "paths")
    if isinstance(result.get("space"), list):
        shown["space"] = [_without(room, "mount_point") for room in result["space"]]
    return shown


_RESULT_PATHS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "snapshot": lambda result: _without(result, "warnings"),
    "restore": _reader_restore_result,
    "check": lambda result: _without(result, "errors"),
    "prune": dict,
    "mirror": dict,
    "mirror_setup": dict,
    "mirror_off": dict,
    "configure": dict,
    "reset": dict,
}


def reader_mirror_message(code: str) -> str:
    return MIRROR_READER_MESSAGES.get(code) or reader_message(code)


def reader_overview(overview: dict[str, Any]) -> dict[str, Any]:
    shown = dict(overview)
    problem = overview.get("problem")
    mirror_error = (overview.get("mirror") or {}).get("last_error")
    if problem is not None and problem == mirror_error:
        shown["problem"] = {**problem, "message": reader_mirror_message(problem.get("code", ""))}
    elif problem is not None and problem.get("code") not in MESSAGES_WITHOUT_PATHS:
        shown["problem"] = {**problem, "message": reader_message(problem.get("code", ""))}
    last_check = overview.get("last_check")
    if last_check is not None:
        message = "no problems found" if last_check.get("ok") else reader_message("check_failed")
        shown["last_check"] = {**last_check, "message": message}
    if overview.get("notify") is not None:
        shown["notify"] = {**overview["notify"], "last_error": None}
    if overview.get("job") is not None:
        shown["job"] = reader_job(overview["job"])
    if mirror_error is not None:
        message = reader_mirror_message(mirror_error.get("code", ""))
        shown["mirror"] = {**overview["mirror"], "last_error": {**mirror_error, "message": message}}
    return shown


def reader_config(config: dict[str, Any]) -> dict[str, Any]:
    shown = _without(config, "sources", "exclude")
    if isinstance(config.get("mirror"), dict):
        shown["mirror"] = _without(config["mirror"], "access_key_id")
    return shown


def reader_snapshots(snapshots: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
    if isinstance(snapshots, dict):
        return {**snapshots, "snapshots": reader_snapshots(snapshots["snapshots"])}
    return [_without(snapshot, "sources") for snapshot in snapshots]


def reader_browse(listing: dict[str, Any]) -> dict[str, Any]:
    """A folder's entries without their names or link targets."""
    entries = [_without(entry, "name", "target") for entry in listing.get("entries", [])]
    return {**_without(listing, "path"), "entries": entries}


def reader_changes(changes: dict[str, Any]) -> dict[str, Any]:
    return {**changes, "changes": [_without(change, "path") for change in changes.get("changes", [])]}


def _without(record: dict[str, Any], *path_fields: str) -> dict[str, Any]:
    """The record with its fields that name paths set to None, the fields kept so clients find them."""
    return {**record, **{name: None for name in path_fields if name in record}}


_READER_VIEWS: dict[Shown, Callable[[Any], Any]] = {
    Shown.NOTHING_PRIVATE: lambda value: value,
    Shown.OVERVIEW: reader_overview,
    Shown.CONFIG: reader_config,
    Shown.JOB: reader_job,
    Shown.JOBS: lambda jobs: ({**jobs, "jobs": [reader_job(record) for record in jobs["jobs"]]}
                              if isinstance(jobs, dict) else [reader_job(record) for record in jobs]),
    Shown.SNAPSHOTS: reader_snapshots,
    Shown.BROWSE: reader_browse,
    Shown.CHANGES: reader_changes,
}
