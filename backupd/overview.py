"""The overview `status` answers: built from memory, never from borg, cheap enough to build
at each change."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backupctl.protocol import ErrorCode, JobKind, ProblemCode
from backupctl.records import LastCheck, MirrorOverview, Problem, SnapshotSummary
from backupctl.records import Overview as OverviewRecord
from backupd.mirror.state import mirror_record
from backupd.schedule import interval
from backupd.settings import SettingsError

if TYPE_CHECKING:
    from backupd.service import Service


class Overview:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._overdue_memo: tuple[tuple[Any, ...], float | None] = ((), None)
        self._off_site_memo: tuple[tuple[Any, Any] | None, int] = (None, 0)

    def record(self) -> OverviewRecord:
        service = self._service
        repository = service.keeper.repository
        config = service.config
        running = service.jobs.current
        if config is None:
            state = "unconfigured"
        else:
            state = "running" if running is not None else "idle"
        last, last_check = repository.last_snapshot, repository.last_check
        return OverviewRecord(
            state=state,
            repository=config.repository if config else None,
            schedule=config.schedule if config else None,
            automatic=service.schedule() is not None,
            next_run=service.next_run,
            last_snapshot=SnapshotSummary(**asdict(last)) if last else None,
            snapshot_count=repository.snapshot_count,
            total_size=repository.total_size,
            file_count=repository.file_count,
            problem=self.problem(),
            last_check=LastCheck(last_check.time, last_check.ok, last_check.message) if last_check else None,
            host_key=repository.host_key,
            retention=self.retention_off_reason() or "old snapshots are pruned after automatic ones",
            notify=service.notify.health(),
            local_size=service.local_usage.size if service.local_usage.measured else None,
            mirror=self.mirror(),
            job=running.record() if running else None,
        )

    def mirror(self) -> MirrorOverview | None:
        """The off-site mirror as the overview shows it; None when there is none."""
        service = self._service
        if service.mirror is None:
            return None
        running = service.jobs.current
        return mirror_record(service.mirror, service.keeper.mirror_state, self._snapshots_not_off_site(),
                             service.local_usage, running=running is not None and running.kind == JobKind.MIRROR)

    def _snapshots_not_off_site(self) -> int:
        """Counted again only when the archives or what the last mirror copied change: status stays cheap."""
        mirrored, archives = self._service.keeper.mirror_state.mirrored_archives, self._service.keeper.repository.archives
        key, count = self._off_site_memo
        if key is None or key[0] is not mirrored or key[1] is not archives:
            names = frozenset(mirrored)
            count = sum(1 for archive in archives if archive.name not in names)
            self._off_site_memo = ((mirrored, archives), count)
        return count

    def retention_off_reason(self) -> str | None:
        """Why old snapshots are not pruned, or None when they are."""
        config = self._service.config
        if config is None:
            return "off: not configured"
        if self._service.schedule() is None:
            return "off: snapshots are manual, and pruning follows automatic snapshots"
        if config.append_only:
            return "off: the server keeps this repository append-only; prune it on the server"
        if not any(config.keep.values()):
            return "off: no keep rule"
        return None

    def overdue_at(self) -> float | None:
        """When the lack of a successful snapshot becomes a problem: two intervals after the last."""
        schedule = self._service.schedule()
        repository = self._service.keeper.repository
        anchor = repository.last_success or repository.configured_at
        if schedule is None or anchor is None:
            return None
        key, deadline = self._overdue_memo
        if key != (schedule, anchor):
            usual = interval(schedule, anchor, self._service.zone)
            deadline = anchor + 2 * usual if usual else None
            self._overdue_memo = ((schedule, anchor), deadline)
        return deadline

    def problem(self) -> Problem | None:
        """The one problem the overview shows: broken settings, then storage, the repository,
        the mirror, and last a snapshot overdue."""
        service = self._service
        if (error := service.settings_error) is not None:
            return Problem(code=ErrorCode.CONFIG_UNREADABLE, message=settings_advice(error),
                           since=service.settings_error_since, line=error.line, column=error.column)
        keeper = service.keeper
        for problem in (keeper.storage_problem, keeper.repository.problem, keeper.mirror_state.error):
            if problem is not None:
                return problem.record()
        overdue_at = self.overdue_at()
        if overdue_at is None or service.clock.now() < overdue_at:
            return None
        last = keeper.repository.last_success
        when = datetime.fromtimestamp(last, service.zone).strftime("%Y-%m-%d %H:%M") if last else None
        message = f"No snapshot has succeeded since {when}" if when else "No snapshot has succeeded yet"
        return Problem(code=ProblemCode.OVERDUE, message=message, since=overdue_at, last_success=last,
                       absent=frozenset({"line", "column"}))


def settings_advice(error: SettingsError) -> str:
    return (f"The daemon's settings are broken, so it does no work until they are fixed: {error}. "
            "Correct the file, then run `systemctl reload backupd`")


def settings_position(error: SettingsError) -> dict[str, int]:
    if error.line is None or error.column is None:
        return {}
    return {"line": error.line, "column": error.column}
