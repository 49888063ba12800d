"""Running borg with trio to its end: spawning it, its exit code, and a graceful stop when cancelled."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from backupd.borg import errors
from backupd.borg.commands import BorgCommand
from backupd.borg.environment import borg_environment, passphrase_pipe
from backupd.borg.log_json import BorgEvent, LogMessage, json_object
from backupd.borg.output import READ_SIZE, BorgOutput
from backupd.borg.process import ChildProcess
from backupd.capabilities import Capability

OUTPUT_DRAIN_SECONDS = 5.0
# A cancelled job ends within about two seconds: borg gets this long to stop on SIGINT (between
# files), then SIGTERM, which it answers at once, releasing its lock.
CANCEL_GRACE_SECONDS = 1.0


@dataclass
class BorgResult:
    exit_code: int
    json: Any | None
    log: list[LogMessage] = field(default_factory=list)
    stdout: str = ""

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout of a ``--json-lines`` command, one object per line; unreadable lines are skipped."""
        return [record for line in self.stdout.splitlines() if (record := json_object(line)) is not None]


async def run_borg(
    command: BorgCommand,
    *,
    borg: Sequence[str],
    passphrase: str | None = None,
    on_event: Callable[[BorgEvent], None] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_stdout: Callable[[bytes], Awaitable[None]] | None = None,
    read_json: Callable[[Any], Any] | None = None,
    grace_period: float = CANCEL_GRACE_SECONDS,
    kill_delay: float = 5.0,
) -> BorgResult:
    """Run borg to completion and return what it reported, or raise errors.BorgFailed.

    Exit codes 0, 1 and 100..127 (warnings) are success. When the calling scope is cancelled,
    borg gets SIGINT, after ``grace_period`` seconds SIGTERM, after ``kill_delay`` more seconds
    SIGKILL; it is always reaped before the cancellation propagates.

    With ``on_stdout``, borg's stdout is handed over chunk by chunk as it arrives (borg waits
    while the callback does) instead of being collected in the result.

    With ``read_json``, the result's ``json`` is what it makes of the decoded JSON, in the same
    worker thread: the decoded document is freed there, not on the event loop.
    """
    secrets = (passphrase,) if passphrase else ()
    environment = borg_environment(env)
    environment["PYTHONIOENCODING"] = command.output_encoding
    output = BorgOutput(on_event, secrets, command.output_encoding, on_stdout)
    process = _spawn([*borg, *command.args], environment, passphrase, cwd, command.capabilities)
    if on_start is not None:
        on_start(process.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.read_stdout, process.stdout)
            nursery.start_soon(output.read_stderr, process.stderr, process.stderr_pipe_bytes)
            await process.wait()
            output.exited.set()
            # A grandchild that inherited the pipes must not keep us waiting for EOF.
            nursery.cancel_scope.deadline = trio.current_time() + OUTPUT_DRAIN_SECONDS
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                await _stop(process, grace_period, kill_delay)
            await _close_pipes(process)
    output.finish()
    assert process.returncode is not None
    exit_code = _exit_code(process.returncode)
    succeeded = errors.is_success(exit_code)
    if succeeded and command.json_output:
        # A listing of thousands of archives is megabytes of JSON: decoded off the event loop.
        json_result, stdout = await trio.to_thread.run_sync(_read_result, output, read_json)
    else:
        json_result, stdout = None, output.stdout_text()
    result = BorgResult(exit_code, json_result, list(output.log), stdout)
    if not succeeded:
        raise errors.borg_error(result, secrets=secrets, repository=command.repository)
    return result


def _read_result(output: BorgOutput, read_json: Callable[[Any], Any] | None) -> tuple[Any, str]:
    """The JSON result (as read_json reads it) and stdout's text."""
    document = output.json_result()
    return (read_json(document) if read_json is not None else document), output.stdout_text()


def _spawn(
    argv: list[str],
    environment: dict[str, str],
    passphrase: str | None,
    cwd: str | None,
    capabilities: frozenset[Capability],
) -> ChildProcess:
    """Start borg in its own session (no terminal to prompt on), stdin /dev/null."""
    pass_fds: tuple[int, ...] = ()
    read_fd = None
    if passphrase is not None:
        read_fd = passphrase_pipe(passphrase)
        environment["BORG_PASSPHRASE_FD"] = str(read_fd)
        pass_fds = (read_fd,)
    try:
        return ChildProcess(argv, environment, cwd, pass_fds, capabilities)
    finally:
        if read_fd is not None:
            os.close(read_fd)


async def _stop(process: ChildProcess, grace_period: float, kill_delay: float) -> None:
    """Ask borg to stop (SIGINT), insist (SIGTERM), then force (SIGKILL), reading its output meanwhile.

    To ``borg create`` a first SIGINT means "write a checkpoint, stop after the current file",
    which can take long inside a big file; SIGTERM unwinds at once and still releases the lock.
    """
    async with trio.open_nursery() as nursery:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                nursery.start_soon(_discard, stream)
        for signal_number, wait in ((signal.SIGINT, grace_period), (signal.SIGTERM, kill_delay)):
            process.send_signal(signal_number)
            with trio.move_on_after(wait):
                await process.wait()
                break
        else:
            _kill_process_group(process)
            await process.wait()
        nursery.cancel_scope.cancel()


async def _close_pipes(process: ChildProcess) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()


def _kill_process_group(process: ChildProcess) -> None:
    # Not reaped yet, so the process group id cannot have been reused.
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _discard(stream: trio.abc.ReceiveStream) -> None:
    try:
        while await stream.receive_some(READ_SIZE):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _exit_code(returncode: int) -> int:
    """Borg's own convention: killed by signal N reads as 128 + N."""
    return errors.EXIT_SIGNAL_BASE - returncode if returncode < 0 else returncode
