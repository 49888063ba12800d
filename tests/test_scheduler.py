"""The scheduler loop on trio's virtual clock: catch-up, retries, fatal errors, overdue.

Jobs here are scripted outcomes run through the real job runner; borg itself is covered
by the daemon tests, including one automatic snapshot end to end."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import trio

from backupctl.protocol import RpcError
from backupd.clock import TrioWallClock
from backupd.config import BackupConfig
from backupd.scheduler import Scheduler, retry_delay
from backupd.actions.parts import RepositoryParts
from backupd.service import Service
from backupd.settings import Settings
from backupd.state import CheckRecord, RepositoryState, SnapshotSummary
from backupd.store import Store

ZONE = ZoneInfo("Europe/Lisbon")
START = datetime(2026, 6, 1, 10, 15, tzinfo=ZONE).timestamp()
HOUR = 3600.0


class ScriptedSnapshots:
    """Starts snapshot jobs whose outcome is the next item of a script (None = success)."""

    def __init__(self, service: Service, outcomes=()):
        self.service = service
        self.outcomes = list(outcomes)
        self.runs: list[tuple[float, str]] = []
        self.prunes: list[float] = []

    def __call__(self, parts: RepositoryParts, trigger: str):
        outcome = self.outcomes.pop(0) if self.outcomes else None
        self.runs.append((parts.now(), trigger))
        return parts.jobs.start("snapshot", trigger, lambda job, report: self.work(outcome))

    def prune(self, parts: RepositoryParts, trigger: str):
        self.prunes.append(parts.now())
        return parts.jobs.start("prune", trigger, lambda job, report: trio.sleep(5))

    async def work(self, outcome):
        await trio.sleep(30)
        if outcome is not None:
            raise RpcError(outcome, f"scripted {outcome}")
        now = self.service.clock.now()
        summary = SnapshotSummary(name=f"box-{now}", time=now, duration=30, files=1, original_size=1,
                                  deduplicated_size=1)
        await self.service.keeper.update(last_snapshot=summary, problem=None)
        return {}


class InlineStore(Store):
    """Writes on the event loop: a worker thread would let the virtual clock run ahead."""

    async def save(self, name, document):
        self.write(name, document)

    async def record(self, name, change, whole):
        if self.append(name, change):
            self.write(name, whole())


def make_service(tmp_path, schedule: str, settings_changes: dict | None = None, **state) -> Service:
    settings_changes = settings_changes or {}
    store = InlineStore(tmp_path / "state")
    store.open()
    settings = Settings(state_dir=tmp_path / "state", timezone="Europe/Lisbon", jitter=0, **settings_changes)
    service = Service(settings, store, clock=TrioWallClock(START))
    service.configuration.adopt(BackupConfig(repository="/srv/repo", passphrase="p", sources=("/data",), schedule=schedule))
    service.keeper.repository = RepositoryState(**state)
    return service


async def run_for(service: Service, script: ScriptedSnapshots, seconds: float) -> Scheduler:
    scheduler = Scheduler(service, starters={"snapshot": script, "prune": script.prune})
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(scheduler.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return scheduler


def local(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, ZONE).strftime("%H:%M")


async def test_hourly_runs_once_an_hour_on_the_hour(tmp_path, autojump_clock):
    service = make_service(tmp_path, "hourly", configured_at=START)
    script = ScriptedSnapshots(service)
    await run_for(service, script, 3 * HOUR)
    assert [(local(when), trigger) for when, trigger in script.runs] == [
        ("11:00", "schedule"), ("12:00", "schedule"), ("13:00", "schedule")]
    assert service.next_run == datetime(2026, 6, 1, 14, 0, tzinfo=ZONE).timestamp()
    assert len(script.prunes) == 3


async def test_many_missed_runs_give_one_catch_up_snapshot(tmp_path, autojump_clock):
    last = SnapshotSummary(name="old", time=START - 10 * HOUR, duration=1, files=1, original_size=1,
                           deduplicated_size=1)
    service = make_service(tmp_path, "hourly", last_snapshot=last, last_attempt=START - 10 * HOUR)
    script = ScriptedSnapshots(service)
    await run_for(service, script, 50 * 60)
    assert [(local(when), trigger) for when, trigger in script.runs] == [("10:15", "schedule"), ("11:00", "schedule")]


async def test_nothing_runs_before_the_first_due_time_or_when_manual(tmp_path, autojump_clock):
    service = make_service(tmp_path, "daily 03:00", configured_at=START)
    script = ScriptedSnapshots(service)
    await run_for(service, script, 16 * HOUR)
    assert script.runs == []
    manual = make_service(tmp_path / "manual", "manual", configured_at=START)
    manual_script = ScriptedSnapshots(manual)
    await run_for(manual, manual_script, 48 * HOUR)
    assert manual_script.runs == [] and manual.next_run is None


async def test_failures_are_retried_with_growing_back_off_until_success(tmp_path, autojump_clock):
    service = make_service(tmp_path, "daily 11:00", configured_at=START)
    script = ScriptedSnapshots(service, ["repository_unreachable"] * 3)
    await run_for(service, script, 2 * HOUR)
    first = script.runs[0][0]
    assert [trigger for _, trigger in script.runs] == ["schedule", "retry", "retry", "retry"]
    gaps = [round(b - a) for (a, _), (b, _) in zip(script.runs, script.runs[1:])]
    assert gaps == [30 + 60, 30 + 120, 30 + 240]
    assert local(first) == "11:00"
    history = [job for job in reversed(service.jobs.recent(10)) if job.kind == "snapshot"]
    assert [job.trigger for job in history] == ["schedule", "retry", "retry", "retry"]
    assert [job.state for job in history] == ["failed", "failed", "failed", "succeeded"]
    assert len(script.prunes) == 1 and script.prunes[0] > script.runs[-1][0]


async def test_retries_stop_when_the_next_regular_run_is_due(tmp_path, autojump_clock):
    service = make_service(tmp_path, "hourly", configured_at=START)
    script = ScriptedSnapshots(service, ["borg_failed"] * 20)
    await run_for(service, script, 2 * HOUR + 120)
    triggers = [(local(when), trigger) for when, trigger in script.runs]
    assert triggers[0] == ("11:00", "schedule")
    assert ("12:00", "schedule") in triggers and ("13:00", "schedule") not in triggers
    assert all(trigger == "retry" for when, trigger in triggers if when not in ("11:00", "12:00"))


@pytest.mark.parametrize("code", ["passphrase_wrong", "repository_not_found"])
async def test_errors_that_retrying_cannot_fix_are_not_retried(tmp_path, autojump_clock, code):
    service = make_service(tmp_path, "hourly", configured_at=START)
    script = ScriptedSnapshots(service, [code, code])
    await run_for(service, script, 2 * HOUR - 60)
    assert [(local(when), trigger) for when, trigger in script.runs] == [("11:00", "schedule"), ("12:00", "schedule")]


async def test_overdue_after_two_intervals_without_success(tmp_path, autojump_clock):
    last = SnapshotSummary(name="old", time=START, duration=1, files=1, original_size=1, deduplicated_size=1)
    service = make_service(tmp_path, "hourly", last_snapshot=last, last_attempt=START)
    script = ScriptedSnapshots(service, ["passphrase_wrong"] * 10)
    subscriber = service.hub.subscribe()
    await run_for(service, script, HOUR)
    assert service.overview.problem() is None
    await run_for(service, script, 1.5 * HOUR)
    problem = service.overview.problem()
    assert problem.code == "overdue" and problem.since == START + 2 * HOUR
    assert problem.last_success == START and "2026-06-01 10:15" in problem.message
    assert any(n.method == "status.changed" and n.params["problem"] for n in await subscriber.next_batch())


async def test_a_configuration_change_plans_again(tmp_path, autojump_clock):
    service = make_service(tmp_path, "daily 03:00", configured_at=START)
    script = ScriptedSnapshots(service)
    scheduler = Scheduler(service, starters={"snapshot": script, "prune": script.prune})
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(scheduler.run)
        await trio.sleep(60)
        assert local(service.next_run) == "03:00"
        await service.configuration.save(BackupConfig(repository="/srv/repo", passphrase="p", sources=("/data",),
                                               schedule="hourly"))
        scheduler.reschedule()
        await trio.sleep(1)
        assert local(service.next_run) == "11:00"
        await trio.sleep(HOUR)
        nursery.cancel_scope.cancel()
    assert [local(when) for when, _ in script.runs] == ["11:00"]


async def test_a_wall_clock_jump_is_noticed(tmp_path, autojump_clock):
    service = make_service(tmp_path, "daily 11:00", configured_at=START)
    script = ScriptedSnapshots(service)
    scheduler = Scheduler(service, starters={"snapshot": script, "prune": script.prune})
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(scheduler.run)
        await trio.sleep(60)
        service.clock.jump(2 * HOUR)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [local(when) for when, _ in script.runs] == ["12:16"]


def test_retry_delays_double_and_are_capped():
    assert [retry_delay(attempt) for attempt in (1, 2, 3, 7, 20, 5000)] == [60, 120, 240, 3600, 3600, 3600]


async def test_a_check_runs_on_its_own_cadence(tmp_path, autojump_clock):
    service = make_service(tmp_path, "manual", {"check_interval_days": 7}, configured_at=START)
    checks: list[float] = []

    def start_check(parts: RepositoryParts, trigger: str):
        checks.append(parts.now())

        async def work(job, report):
            await parts.keeper.update(last_check=CheckRecord(time=parts.now(), ok=True, message="ok"))

        return parts.jobs.start("check", trigger, work)

    scheduler = Scheduler(service, starters={"check": start_check})
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(scheduler.run)
        await trio.sleep(15 * 86400)
        nursery.cancel_scope.cancel()
    assert [round((when - START) / 86400) for when in checks] == [7, 14]


async def test_no_pruning_against_an_append_only_server(tmp_path, autojump_clock):
    service = make_service(tmp_path, "hourly", configured_at=START)
    service.configuration.adopt(BackupConfig(repository="/srv/repo", passphrase="p", sources=("/data",), schedule="hourly",
                                     append_only=True))
    script = ScriptedSnapshots(service)
    await run_for(service, script, HOUR)
    assert len(script.runs) == 1 and script.prunes == []
    assert "append-only" in service.overview.record().retention


async def test_clock_jumps_back_and_forth_give_no_duplicate_and_no_lost_run(tmp_path, autojump_clock):
    service = make_service(tmp_path, "hourly", configured_at=START)
    script = ScriptedSnapshots(service)
    scheduler = Scheduler(service, starters={"snapshot": script, "prune": script.prune})
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(scheduler.run)
        await trio.sleep(50 * 60)
        assert [local(when) for when, _ in script.runs] == ["11:00"]
        service.clock.jump(-2 * HOUR)
        await trio.sleep(60)
        assert len(script.runs) == 1, "the 11:00 run must not run again after the clock went back"
        service.clock.jump(2 * HOUR)
        await trio.sleep(HOUR)
        nursery.cancel_scope.cancel()
    assert [local(when) for when, _ in script.runs] == ["11:00", "12:00"]

