import pytest
import trio

from backupctl.protocol import ErrorCode, RpcError
from backupctl.records import Progress
from backupd.events import EventHub
from backupd.jobs import Job, JobRunner


class Recorder:
    def __init__(self):
        self.saved: list[tuple[str, str]] = []

    async def __call__(self, job: Job) -> None:
        self.saved.append((job.id, str(job.state)))


async def start_runner(nursery, history=()):
    hub = EventHub()
    subscriber = hub.subscribe()
    recorder = Recorder()
    runner = JobRunner(hub, list(history), recorder)
    await nursery.start(runner.run)
    return runner, subscriber, recorder


async def test_a_job_runs_reports_and_is_recorded(autojump_clock):
    async with trio.open_nursery() as nursery:
        runner, subscriber, recorder = await start_runner(nursery)

        async def work(job, report):
            for files in range(1, 11):
                report(Progress(files=files))
                await trio.sleep(0.1)
            return {"done": True}

        job = runner.start("snapshot", "manual", work)
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert job.state == "succeeded" and job.result == {"done": True} and job.progress == Progress(files=10)
    assert job.finished >= job.started
    assert recorder.saved == [("1", "running"), ("1", "succeeded")]
    methods = [n.method for n in await subscriber.next_batch()]
    assert methods[0] == "job.started" and methods[-1] == "job.finished"
    assert 1 <= methods.count("job.progress") <= 5


async def test_one_job_at_a_time():
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)
        gate = trio.Event()

        async def work(job, report):
            await gate.wait()

        first = runner.start("snapshot", "manual", work)
        with pytest.raises(RpcError) as raised:
            runner.start("restore", "manual", work)
        assert raised.value.code == ErrorCode.BUSY and raised.value.data["job"]["id"] == first.id
        gate.set()
        await runner.wait(first)
        second = runner.start("restore", "manual", work)
        await runner.wait(second)
        nursery.cancel_scope.cancel()
    assert [job.id for job in runner.recent(10)] == ["2", "1"]


async def test_failures_and_cancellation_are_recorded():
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)

        async def fails(job, report):
            raise RpcError(ErrorCode.REPOSITORY_LOCKED, "locked")

        async def crashes(job, report):
            raise ZeroDivisionError

        async def hangs(job, report):
            await trio.sleep_forever()

        failed = runner.start("snapshot", "manual", fails)
        await runner.wait(failed)
        crashed = runner.start("snapshot", "manual", crashes)
        await runner.wait(crashed)
        hung = runner.start("snapshot", "manual", hangs)
        await trio.sleep(0)
        runner.cancel(hung.id)
        await runner.wait(hung)
        nursery.cancel_scope.cancel()
    assert (failed.state, failed.error["code"]) == ("failed", "repository_locked")
    assert (crashed.state, crashed.error["code"]) == ("failed", "internal")
    assert (hung.state, hung.error["code"]) == ("cancelled", "cancelled")
    assert runner.current is None


async def test_ids_continue_after_history_and_unknown_ids_are_not_found():
    old = Job(id="41", kind="snapshot", trigger="manual", started=1.0, state="succeeded", finished=2.0)
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery, [old])

        async def work(job, report):
            return None

        job = runner.start("snapshot", "manual", work)
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert job.id == "42"
    with pytest.raises(RpcError) as raised:
        runner.cancel("nope")
    assert raised.value.code == ErrorCode.NOT_FOUND
    assert Job.from_record(old.to_record()) == old


async def test_a_typed_error_from_inside_a_nursery_keeps_its_code():
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)

        async def fails_in_a_nursery(job, report):
            async with trio.open_nursery() as inner:
                inner.start_soon(trio.sleep_forever)
                raise RpcError(ErrorCode.REPOSITORY_NOT_FOUND, "gone")

        job = runner.start("snapshot", "manual", fails_in_a_nursery)
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert job.error["code"] == "repository_not_found"


async def test_a_manual_job_stops_automatic_upkeep_and_starts_once_it_has_ended(autojump_clock):
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)
        order: list[str] = []

        async def upkeep(job, report):
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(3)  # borg takes a moment to let go of the repository
                order.append(f"{job.kind} ended")

        async def snapshot(job, report):
            order.append("snapshot started")
            return {"done": True}

        check = runner.start("check", "schedule", upkeep)
        await trio.sleep(1)
        taken = runner.start("snapshot", "manual", snapshot)
        assert runner.current is taken
        await runner.wait(taken)
        prune = runner.start("prune", "schedule", upkeep)
        await trio.sleep(1)
        restore = runner.start("restore", "manual", snapshot)
        await runner.wait(restore)
        nursery.cancel_scope.cancel()
    assert order == ["check ended", "snapshot started", "prune ended", "snapshot started"]
    assert (check.state, check.error["code"]) == ("cancelled", "cancelled")
    assert "gave way to the snapshot" in check.error["message"] and prune.state == "cancelled"
    assert taken.state == "succeeded" and restore.state == "succeeded" and runner.current is None


async def test_manual_work_and_automatic_snapshots_do_not_give_way():
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)
        gate = trio.Event()

        async def work(job, report):
            await gate.wait()

        for kind, trigger in [("check", "manual"), ("snapshot", "schedule"), ("restore", "manual")]:
            running = runner.start(kind, trigger, work)
            for asked in ("snapshot", "restore", "check"):
                with pytest.raises(RpcError) as raised:
                    runner.start(asked, "manual", work)
                assert raised.value.code == ErrorCode.BUSY
            with pytest.raises(RpcError):
                runner.start("prune", "schedule", work)
            gate.set()
            await runner.wait(running)
            gate = trio.Event()
        nursery.cancel_scope.cancel()
    assert [job.state for job in runner.recent(10)] == ["succeeded"] * 3


async def test_a_mirror_whoever_asked_for_it_gives_way_to_any_other_job_and_stops_none(autojump_clock):
    async with trio.open_nursery() as nursery:
        runner, _, _ = await start_runner(nursery)

        async def stalled(job, report):
            await trio.sleep_forever()

        async def local_work(job, report):
            await trio.sleep(5)

        stopped = []
        for mirror_trigger, kind, trigger in [("schedule", "snapshot", "schedule"), ("retry", "snapshot", "retry"),
                                              ("manual", "check", "schedule"), ("schedule", "prune", "schedule"),
                                              ("manual", "restore", "manual"), ("retry", "mirror_off", "manual")]:
            mirror = runner.start("mirror", mirror_trigger, stalled)
            await trio.sleep(1)
            other = runner.start(kind, trigger, local_work)
            await runner.wait(other)
            assert (mirror.state, mirror.gave_way_to, other.state) == ("cancelled", other.id, "succeeded")
            stopped.append(mirror.error["message"])

        mirror = runner.start("mirror", "schedule", stalled)
        with pytest.raises(RpcError) as raised:
            runner.start("mirror", "manual", local_work)
        assert raised.value.code == ErrorCode.BUSY
        runner.cancel(mirror.id)
        await runner.wait(mirror)
        assert (mirror.state, mirror.gave_way_to) == ("cancelled", None)
        assert mirror.error["message"] == "The mirror was cancelled"
        check = runner.start("check", "manual", local_work)
        with pytest.raises(RpcError) as raised:
            runner.start("mirror", "manual", local_work)
        assert raised.value.code == ErrorCode.BUSY
        await runner.wait(check)
        nursery.cancel_scope.cancel()
    assert stopped[0] == "The automatic mirror gave way to the automatic snapshot (job 2); it runs again later"
    assert stopped[2] == "The mirror gave way to the automatic check (job 6); it runs again later"
    assert stopped[4] == "The mirror gave way to the restore asked for as job 10; it runs again later"
