import sys

import pytest
import trio

from backupctl.protocol import RpcError
from backupd.hooks import around_job, run_hook
from backupd.jobs import Job
from backupd.settings import Hooks

JOB = Job(id="7", kind="restore", trigger="manual", started=0.0)


async def test_an_argv_hook_runs_without_a_shell_and_sees_its_environment(tmp_path):
    out = tmp_path / "out"
    await run_hook("before_restore", (sys.executable, "-c",
                   f"import os; open({str(out)!r}, 'w').write(os.environ['BACKUPD_HOOK'] + ' $HOME')"),
                   {}, timeout=10)
    assert out.read_text() == "before_restore $HOME"


async def test_a_string_hook_runs_with_the_shell(tmp_path):
    out = tmp_path / "out"
    await run_hook("after_snapshot", f"echo \"$BACKUPD_HOOK\" > {out}", {}, timeout=10)
    assert out.read_text() == "after_snapshot\n"


async def test_a_failing_hook_is_hook_failed_with_its_output():
    with pytest.raises(RpcError) as raised:
        await run_hook("before_snapshot", "echo stopping apps; echo cannot stop nextcloud >&2; exit 3", {}, timeout=10)
    error = raised.value
    assert error.code == "hook_failed" and error.data["exit_code"] == 3
    assert error.data["last_lines"] == ["cannot stop nextcloud"] and "before snapshot hook" in error.message


async def test_a_missing_command_and_a_slow_hook_are_hook_failed():
    with pytest.raises(RpcError, match="cannot be started"):
        await run_hook("before_snapshot", ("/nonexistent/stop-apps",), {}, timeout=10)
    with trio.fail_after(5):
        with pytest.raises(RpcError, match="did not finish"):
            await run_hook("before_snapshot", ("sleep", "30"), {}, timeout=0.2)


async def test_the_after_hook_runs_even_when_the_work_fails(tmp_path):
    log = tmp_path / "log"
    hooks = Hooks(before_restore=f"echo before >> {log}",
                  after_restore=f"echo after $BACKUPD_JOB_STATE $BACKUPD_JOB_ID >> {log}")

    async def fails():
        raise RpcError("borg_failed", "extract failed")

    with pytest.raises(RpcError, match="extract failed"):
        await around_job(hooks, "restore", JOB, fails)
    assert log.read_text() == "before\nafter failed 7\n"


async def test_a_failing_before_hook_skips_the_work_but_still_runs_the_after_hook(tmp_path):
    log = tmp_path / "log"
    hooks = Hooks(before_restore="exit 1", after_restore=f"echo after >> {log}")
    ran = []

    async def work():
        ran.append(True)

    with pytest.raises(RpcError) as raised:
        await around_job(hooks, "restore", JOB, work)
    assert raised.value.code == "hook_failed" and ran == [] and log.read_text() == "after\n"
