"""When the daemon mirrors by itself, on trio's virtual clock: after changes, one mirror for a
snapshot and its prune, retries with back-off, a full comparison after a check; a mirror that
gives way to other work, is cancelled by a person, or succeeds when a person asks for it.

Mirror jobs here are scripted outcomes run through the real job runner; rclone and the
bucket are covered by test_mirror."""

from __future__ import annotations

from dataclasses import replace

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.actions.mirror_schedule import keep_mirrored
from backupd.actions.parts import MirrorParts
from backupd.jobs import Job
from backupd.mirror.config import MirrorConfig
from backupd.scheduler import Scheduler, retry_delay
from backupd.service import Service
from backupd.state import Problem
from tests.test_scheduler import START, ScriptedSnapshots
from tests.test_scheduler import make_service as make_scheduled_service

MIRROR = MirrorConfig(provider="s3", bucket="edgebox", prefix="box", access_key_id="id", secret_access_key="secret")


def make_service(tmp_path, schedule: str, **state) -> Service:
    """A service whose repository is not measured: a worker thread would let the virtual clock run ahead."""
    service = make_scheduled_service(tmp_path, schedule, **state)
    service.configuration.adopt(replace(service.config, repository="ssh://backup@server.example/./repo"))
    return service


class ScriptedMirrors:
    """Starts mirror jobs whose outcome is the next item of a script (None = success, HANG = a
    mirror that never ends by itself, as one whose service stopped answering)."""

    def __init__(self, outcomes: list[str | None] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.runs: list[tuple[float, bool]] = []
        self.triggers: list[str] = []
        self.jobs: list[Job] = []

    def __call__(self, parts: MirrorParts, trigger: str, compare_whole: bool = False) -> Job:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        self.runs.append((parts.repository.now() - START, compare_whole))
        self.triggers.append(str(trigger))

        async def work(job: Job, report: object) -> dict[str, object]:
            if outcome == HANG:
                await trio.sleep_forever()
            await trio.sleep(10)
            if outcome == ErrorCode.MIRROR_TAKEN_OVER:  # as a real mirror records it
                await parts.repository.keeper.update_mirror_state(
                    error=Problem(outcome, "another box", parts.repository.now(), "mirror"))
            if outcome is not None:
                raise RpcError(outcome, f"scripted {outcome}")
            return {}

        self.jobs.append(parts.repository.jobs.start("mirror", trigger, work))
        return self.jobs[-1]


HANG = "hang"


async def succeed(service: Service, kind: str, seconds: float = 5) -> None:
    job = service.jobs.start(kind, "manual", lambda job, report: trio.sleep(seconds))
    await service.jobs.wait(job)


async def run_keeper(service: Service, script: ScriptedMirrors, story) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(keep_mirrored, service.mirror_parts, service.changes, script)
        await story()
        nursery.cancel_scope.cancel()


async def test_a_snapshot_and_the_prune_after_it_give_one_mirror(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors()

    async def story() -> None:
        await succeed(service, "snapshot")
        await succeed(service, "prune")
        await trio.sleep(600)

    await run_keeper(service, script, story)
    assert script.runs == [(10 + 1, False)]


async def test_a_failed_mirror_is_retried_after_one_then_two_minutes_until_it_succeeds(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors(["repository_unreachable", "mirror_failed", None])

    async def story() -> None:
        await succeed(service, "snapshot")
        await trio.sleep(3600)

    await run_keeper(service, script, story)
    first = 5 + 1
    second = first + 10 + retry_delay(1) + 1
    third = second + 10 + retry_delay(2) + 1
    assert script.runs == [(first, False), (second, False), (third, False)]
    assert script.triggers == ["schedule", "retry", "retry"]


async def test_a_check_brings_a_full_comparison_and_nothing_runs_without_a_mirror(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    script = ScriptedMirrors()

    async def story() -> None:
        await succeed(service, "snapshot")
        await trio.sleep(60)
        service.mirroring.current = MIRROR
        await succeed(service, "check")
        await trio.sleep(60)

    await run_keeper(service, script, story)
    assert script.runs == [(5 + 60 + 5 + 1, True)]


async def test_a_failed_snapshot_brings_no_mirror(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors()

    async def fail(job: Job, report: object) -> None:
        raise RpcError("borg_failed", "scripted")

    async def story() -> None:
        await service.jobs.wait(service.jobs.start("snapshot", "manual", fail))
        await trio.sleep(600)

    await run_keeper(service, script, story)
    assert script.runs == []


async def test_a_mirror_a_person_asked_for_that_succeeds_ends_the_back_off(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors(["repository_unreachable", "repository_unreachable", None, "repository_unreachable"])

    async def story() -> None:
        await succeed(service, "snapshot")  # the first mirror fails at 16; the retry at 77 fails at 87
        await trio.sleep(100)
        await service.jobs.wait(script(service.mirror_parts, "manual"))  # at 105, after the second failure
        await trio.sleep(3600)

    await run_keeper(service, script, story)
    assert script.runs == [(6, False), (6 + 10 + 60 + 1, False), (105, False)]
    assert script.triggers == ["schedule", "retry", "manual"]


async def test_a_mirror_a_person_cancels_runs_again_after_the_back_off_not_at_once(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors([HANG, HANG, None])
    cancelled: list[float] = []

    async def story() -> None:
        await succeed(service, "snapshot")
        for count in (1, 2):
            while len(script.jobs) < count:
                await trio.sleep(1)
            await trio.sleep(30)
            cancelled.append(service.clock.now() - START)
            service.jobs.cancel(script.jobs[-1].id)
        await trio.sleep(3600)

    await run_keeper(service, script, story)
    assert script.runs == [(6, False), (cancelled[0] + retry_delay(1) + 1, False),
                           (cancelled[1] + retry_delay(2) + 1, False)]
    assert script.triggers == ["schedule", "retry", "retry"]
    assert [job.state for job in script.jobs] == ["cancelled", "cancelled", "succeeded"]


async def test_a_mirror_gives_way_to_any_other_job_and_runs_again_after_it(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors([HANG, HANG, None, None])

    async def story() -> None:
        await succeed(service, "snapshot")  # its mirror hangs
        await trio.sleep(60)
        restore = service.jobs.start("restore", "manual", lambda job, report: trio.sleep(20))
        await service.jobs.wait(restore)  # the mirror after it hangs too
        await trio.sleep(60)
        snapshot = service.jobs.start("snapshot", "schedule", lambda job, report: trio.sleep(20))
        await service.jobs.wait(snapshot)
        await trio.sleep(3600)

    await run_keeper(service, script, story)
    restored = 5 + 60  # when the restore and the snapshot start
    snapshot = restored + 20 + 60
    assert script.runs == [(6, False), (restored + 20 + 1, False), (snapshot + 20 + 1, False)]
    assert script.triggers == ["schedule", "schedule", "schedule"]
    first, second, third = script.jobs
    assert (first.state, second.state, third.state) == ("cancelled", "cancelled", "succeeded")
    assert first.error is not None and second.error is not None
    assert "The automatic mirror gave way to the restore asked for as job" in first.error["message"]
    assert "The automatic mirror gave way to the automatic snapshot (job" in second.error["message"]


async def test_a_scheduled_snapshot_due_while_a_mirror_hangs_starts_at_once(tmp_path, autojump_clock) -> None:
    service = make_service(tmp_path, "hourly", configured_at=START)
    service.mirroring.current = MIRROR
    mirrors = ScriptedMirrors([HANG, None])
    snapshots = ScriptedSnapshots(service)
    scheduler = Scheduler(service, starters={"snapshot": snapshots, "prune": snapshots.prune})

    async with trio.open_nursery() as nursery:
        await nursery.start(service.jobs.run)
        await nursery.start(keep_mirrored, service.mirror_parts, service.changes, mirrors)
        await nursery.start(scheduler.run)
        await trio.sleep(10 * 60)  # 10:25
        hanging = mirrors(service.mirror_parts, "manual")
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()

    due = START + 45 * 60  # 11:00
    assert [(when - due, trigger) for when, trigger in snapshots.runs] == [(0, "schedule")]
    assert hanging.state == "cancelled" and hanging.finished == due
    snapshot = next(job for job in service.jobs.recent(10) if job.kind == "snapshot")
    assert snapshot.state == "succeeded" and snapshot.finished == due + 30
    assert [round(when - (due - START)) for when, _ in mirrors.runs[1:]] == [30 + 5 + 1]  # after its prune
    assert mirrors.jobs[-1].state == "succeeded"


async def test_a_mirror_that_lost_its_prefix_is_not_tried_again_until_it_is_set_up_again(
    tmp_path, autojump_clock
) -> None:
    service = make_service(tmp_path, "manual")
    service.mirroring.current = MIRROR
    script = ScriptedMirrors([ErrorCode.MIRROR_TAKEN_OVER])

    async def story() -> None:
        await succeed(service, "snapshot")
        await trio.sleep(3 * 3600)
        assert len(script.runs) == 1  # no retry
        await succeed(service, "snapshot")
        await trio.sleep(3600)
        assert len(script.runs) == 1  # a change starts none either
        await service.keeper.update_mirror_state(error=None)  # what setting the mirror up again does
        await succeed(service, "mirror_setup")
        await trio.sleep(60)
        assert len(script.runs) == 2

    await run_keeper(service, script, story)
