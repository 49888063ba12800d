"""The overview `status` answers, built in this process from a service over a state folder: what
it says unconfigured, when a missing snapshot becomes a problem, which problem it shows when
several stand, and why old snapshots are or are not pruned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backupctl.protocol import ErrorCode, ProblemCode
from backupctl.records import Overview
from backupd.config import BackupConfig
from backupd.mirror.state import MirrorState
from backupd.service import Service
from backupd.settings import Settings, SettingsError
from backupd.state import Problem, RepositoryState, SnapshotSummary
from backupd.store import Store

START = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
HOUR = 3600.0


class StoppedClock:
    """Wall time that moves only when a test moves it."""

    def __init__(self, now: float) -> None:
        self.time = now

    def now(self) -> float:
        return self.time

    async def sleep_until(self, when: float) -> bool:
        raise AssertionError("the overview never sleeps")


@pytest.fixture
def clock() -> StoppedClock:
    return StoppedClock(START)


@pytest.fixture
def service(tmp_path: Path, clock: StoppedClock) -> Service:
    settings = Settings(state_dir=tmp_path / "state", borg_base_dir=tmp_path / "base", timezone="UTC")
    store = Store(settings.state_dir)
    store.open()
    service = Service(settings, store, clock=clock)
    service.load()
    return service


def configure(service: Service, schedule: str = "hourly", **changes: object) -> None:
    config = BackupConfig(repository="/srv/repo", passphrase="p", sources=("/data",), schedule=schedule)
    service.configuration.adopt(replace(config, **changes))


def snapshot_at(time: float) -> SnapshotSummary:
    return SnapshotSummary(name="box-1", time=time, duration=5.0, files=3, original_size=30, deduplicated_size=10)


def problem(code: str, since: float = START) -> Problem:
    return Problem(code=code, message=f"{code} happened", since=since, operation="snapshot")


def test_unconfigured_it_says_so_and_nothing_else(service: Service) -> None:
    overview = service.overview.record()
    assert (overview.state, overview.repository, overview.schedule, overview.automatic) == \
        ("unconfigured", None, None, False)
    assert overview.problem is None and overview.job is None and overview.last_snapshot is None
    assert overview.retention == "off: not configured"
    assert Overview.from_wire(overview.to_wire()) == overview


def test_a_snapshot_is_overdue_two_intervals_after_the_last_success(service: Service, clock: StoppedClock) -> None:
    configure(service)
    service.keeper.repository = RepositoryState(last_snapshot=snapshot_at(START))
    clock.time = START + 2 * HOUR - 1
    assert service.overview.record().problem is None
    clock.time = START + 2 * HOUR
    overdue = service.overview.record().problem
    assert overdue is not None and overdue.code is ProblemCode.OVERDUE
    assert (overdue.since, overdue.last_success) == (START + 2 * HOUR, START)
    assert overdue.message == "No snapshot has succeeded since 2026-05-28 20:26"


def test_with_no_snapshot_ever_overdue_counts_from_the_configuration_and_says_nil(
        service: Service, clock: StoppedClock) -> None:
    configure(service)
    service.keeper.repository = RepositoryState(configured_at=START)
    clock.time = START + 3 * HOUR
    wire = service.overview.record().to_wire()["problem"]
    assert wire == {"code": "overdue", "message": "No snapshot has succeeded yet", "since": START + 2 * HOUR,
                    "last_success": None}


def test_manual_snapshots_are_never_overdue(service: Service, clock: StoppedClock) -> None:
    configure(service, schedule="manual")
    service.keeper.repository = RepositoryState(last_snapshot=snapshot_at(START))
    clock.time = START + 100 * HOUR
    assert service.overview.record().problem is None


def test_the_overview_shows_the_first_problem_settings_storage_repository_mirror_overdue(
        service: Service, clock: StoppedClock) -> None:
    configure(service)
    service.keeper.repository = RepositoryState(last_snapshot=snapshot_at(START), problem=problem("repository_locked"))
    service.keeper.storage_problem = problem("state_unwritable")
    service.keeper.mirror_state = MirrorState(error=problem("mirror_failed"))
    service.settings_unreadable(SettingsError("bad value", line=3, column=7))
    clock.time = START + 10 * HOUR

    shown = []
    for clear in (lambda: service.settings_unreadable(None),
                  lambda: setattr(service.keeper, "storage_problem", None),
                  lambda: setattr(service.keeper, "repository", replace(service.keeper.repository, problem=None)),
                  lambda: setattr(service.keeper, "mirror_state", MirrorState())):
        shown.append(service.overview.record().problem)
        clear()
    shown.append(service.overview.record().problem)

    assert [each.code for each in shown if each] == [ErrorCode.CONFIG_UNREADABLE, "state_unwritable",
                                                     "repository_locked", "mirror_failed", ProblemCode.OVERDUE]
    settings = shown[0].to_wire()
    assert (settings["line"], settings["column"], settings["since"]) == (3, 7, START)
    assert "last_success" not in settings
    assert shown[2].to_wire() == {"code": "repository_locked", "message": "repository_locked happened",
                                  "since": START}


@pytest.mark.parametrize(
    ("schedule", "changes", "retention"),
    [
        ("manual", {}, "off: snapshots are manual, and pruning follows automatic snapshots"),
        ("hourly", {"append_only": True}, "off: the server keeps this repository append-only; prune it on the server"),
        ("hourly", {"keep": {"daily": 0}}, "off: no keep rule"),
        ("hourly", {}, "old snapshots are pruned after automatic ones"),
    ],
)
def test_retention_says_why_old_snapshots_are_not_pruned(
        service: Service, schedule: str, changes: dict[str, object], retention: str) -> None:
    configure(service, schedule=schedule, **changes)
    assert service.overview.record().retention == retention
