"""Operator hooks around snapshots and restores: run without a shell unless the operator
wrote a shell string, with a time limit, their failure reported as `hook_failed`."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import trio

from backupctl.protocol import ErrorCode, RpcError
from backupd.jobs import Job
from backupd.settings import HookCommand, Hooks

Result = TypeVar("Result")

log = logging.getLogger(__name__)

MAX_OUTPUT_LINES = 10
_INHERITED_NOT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def hook_argv(command: HookCommand) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


async def run_hook(name: str, command: HookCommand | None, env: Mapping[str, str], timeout: float) -> None:
    """Run one hook; raise hook_failed when it cannot start, fails, or outlives its time."""
    if command is None:
        return
    environment = {key: value for key, value in os.environ.items() if key not in _INHERITED_NOT}
    environment.update(env, BACKUPD_HOOK=name)
    log.info("running hook %s", name)
    try:
        with trio.fail_after(timeout):
            result = await trio.run_process(
                hook_argv(command),
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except trio.TooSlowError:
        raise _hook_failed(name, f"did not finish within {timeout:.0f} s", None, b"") from None
    except OSError as error:
        raise _hook_failed(name, f"cannot be started: {error.strerror or error}", None, b"") from None
    if result.returncode != 0:
        raise _hook_failed(name, f"exited with status {result.returncode}", result.returncode,
                           result.stderr or result.stdout)


def _hook_failed(name: str, what: str, exit_code: int | None, output: bytes) -> RpcError:
    lines = output.decode("utf-8", "replace").strip().splitlines()[-MAX_OUTPUT_LINES:]
    log.warning("hook %s %s", name, what)
    return RpcError(
        ErrorCode.HOOK_FAILED,
        f"The {name.replace('_', ' ')} hook {what}",
        {"hook": name, "exit_code": exit_code, "last_lines": lines},
    )


async def around_job(hooks: Hooks, kind: str, job: Job, work: Callable[[], Awaitable[Result]]) -> Result:
    """Run the before hook, the work, then the after hook. The after hook runs whatever
    happened, so services a before hook stopped are started again even after a failure."""
    env = {"BACKUPD_JOB_ID": job.id, "BACKUPD_JOB_KIND": job.kind, "BACKUPD_JOB_TRIGGER": job.trigger}
    after = getattr(hooks, f"after_{kind}")
    try:
        await run_hook(f"before_{kind}", getattr(hooks, f"before_{kind}"), env, hooks.timeout)
        result = await work()
    except BaseException as failure:
        state = "cancelled" if isinstance(failure, trio.Cancelled) else "failed"
        with trio.CancelScope(shield=True):
            try:
                await run_hook(f"after_{kind}", after, {**env, "BACKUPD_JOB_STATE": state}, hooks.timeout)
            except RpcError:
                pass
        raise
    await run_hook(f"after_{kind}", after, {**env, "BACKUPD_JOB_STATE": "succeeded"}, hooks.timeout)
    return result
