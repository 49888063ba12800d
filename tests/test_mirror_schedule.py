"""When the daemon mirrors by itself, on trio's virtual clock: after changes, one mirror for a
snapshot and its prune, retries with back-off, a full comparison after a check.

Mirror jobs here are scripted outcomes run through the real job runner; rclone and the
bucket are covered by test_mirror."""

from __future__ import annotations

from dataclasses import replace

import trio

from backupctl.protocol import RpcError
from backupd.actions.mirror_schedule import keep_mirrored
from backupd.actions.parts import MirrorParts
from backupd.jobs import Job
from backupd.mirror.config import MirrorConfig
from backupd.scheduler import retry_delay
from backupd.service import Service
from tests.test_scheduler import START
from tests.test_scheduler import make_service as make_scheduled_service

MIRROR = MirrorConfig(provider="s3", bucket="edgebox", prefix="box", access_key_id="id", secret_access_key="secret")


def make_service(tmp_path, schedule: str) -> Service:
    """A service whose repository is not measured: a worker thread would let the virtual clock run ahead."""
    service = make_scheduled_service(tmp_path, schedule)
    service.configuration.adopt(replace(service.config, repository="ssh://backup@server.example/./repo"))
    return service


class ScriptedMirrors:
    """Starts mirror jobs whose outcome is the next item of a script (None = success)."""

    def __init__(self, outcomes: list[str | None] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.runs: list[tuple[float, bool]] = []

    def __call__(self, parts: MirrorParts, trigger: str, compare_whole: bool = False) -> Job:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        self.runs.append((parts.repository.now() - START, compare_whole))

        async def work(job: Job, report: object) -> dict[str, object]:
            await trio.sleep(10)
            if outcome is not None:
                raise RpcError(outcome, f"scripted {outcome}")
            return {}

        return parts.repository.jobs.start("mirror", trigger, work)


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
