"""Spawning borg with trio: environment, passphrase pipe, ``--log-json`` events, exit codes, cancellation."""

from __future__ import annotations

import json
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from backupctl.paths import printable
from backupd.borg import errors
from backupd.borg.commands import BorgCommand
from backupd.borg.process import ChildProcess
from backupd.capabilities import Capability
from backupd.redaction import redact

PASSPHRASE_VARIABLES = frozenset(
    {"BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_NEW_PASSPHRASE", "BORG_PASSPHRASE_FD"}
)
# Meant for the daemon itself; borg must not answer systemd in its place.
SYSTEMD_VARIABLES = frozenset(
    {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
)
BORG_SETTINGS: Mapping[str, str] = {
    "BORG_EXIT_CODES": "modern",
    "BORG_DISPLAY_PASSPHRASE": "no",
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    # Lets borg remove a lock whose holder on this host is dead; a live holder's lock stays.
    "BORG_HOSTNAME_IS_UNIQUE": "yes",
}

KEPT_LOG_MESSAGES = 50
MAX_LINE_BYTES = 1024 * 1024
OUTPUT_DRAIN_SECONDS = 5.0
# A cancelled job ends within about two seconds: borg gets this long to stop on SIGINT (between
# files), then SIGTERM, which it answers at once, releasing its lock.
CANCEL_GRACE_SECONDS = 1.0
# While borg writes line after line (one per item of a restore), its stderr is read at most
# this often, so each wake-up takes many lines at once.
BUSY_READ_INTERVAL = 0.02
_READ_SIZE = 65536
# How borg's JsonFormatter ends a line of its list logger: recognised without decoding it.
_LISTED_ITEM_START = b'{"type": "log_message", '
_LISTED_ITEM_END = b'"levelname": "INFO", "name": "borg.output.list"}'


@dataclass(frozen=True)
class ArchiveProgress:
    original_size: int | None
    compressed_size: int | None
    deduplicated_size: int | None
    nfiles: int | None
    path: str | None
    finished: bool
    time: float | None


@dataclass(frozen=True)
class ProgressPercent:
    operation: int | None
    msgid: str | None
    current: int | float | None
    total: int | float | None
    info: list[Any] | None
    message: str | None
    finished: bool


@dataclass(frozen=True)
class ProgressMessage:
    operation: int | None
    msgid: str | None
    message: str | None
    finished: bool


@dataclass(frozen=True)
class LogMessage:
    levelname: str
    name: str
    message: str
    msgid: str | None
    time: float | None


@dataclass(frozen=True)
class FileStatus:
    status: str
    path: str


# borg's --log-json record: {"type": ..., "time": ..., "message": "...", "levelname": ..., ...}.
# A quote inside the message is escaped, so the first '", "levelname"' after it ends it.
_MESSAGE_START = b'"message": "'
_MESSAGE_END = b'", "levelname"'


@dataclass(frozen=True, slots=True)
class ListedItem:
    """One line of borg's ``--list`` output (an item extracted, an archive pruned), kept as
    borg wrote it: a restore lists every item, and only the latest one is ever read."""

    line: bytes
    encoding: str
    secrets: tuple[str, ...]

    @property
    def message(self) -> str:
        record = _json_object(_decode(self.line, self.encoding))
        message = _str(record.get("message")) if record is not None else None
        return _as_text(_plain_text(message or ""), self.secrets).message

    @property
    def path(self) -> str:
        """The item's archive path, cut out of the line without decoding all of it: a restore
        reads one per extracted item. Not redacted; for measuring, not for showing."""
        start = self.line.find(_MESSAGE_START)
        end = self.line.find(_MESSAGE_END, start)
        if start < 0 or end < 0:
            return _str((_json_object(_decode(self.line, self.encoding)) or {}).get("message")) or ""
        quoted = self.line[start + len(_MESSAGE_START) - 1:end + 1]
        if b"\\" not in quoted:
            return _decode(quoted[1:-1], self.encoding)
        try:
            return str(json.loads(_decode(quoted, self.encoding)))
        except ValueError:
            return ""


BorgEvent = ArchiveProgress | ProgressPercent | ProgressMessage | LogMessage | FileStatus | ListedItem


@dataclass
class BorgResult:
    exit_code: int
    json: Any | None
    log: list[LogMessage] = field(default_factory=list)
    stdout: str = ""

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout of a ``--json-lines`` command, one object per line; unreadable lines are skipped."""
        return [record for line in self.stdout.splitlines() if (record := _json_object(line)) is not None]


def borg_environment(
    overrides: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) fit for borg: no secrets, no systemd handles."""
    if overrides and PASSPHRASE_VARIABLES & overrides.keys():
        raise ValueError("a passphrase goes through run_borg(passphrase=...), never the environment")
    source = os.environ if base is None else base
    environment = {
        name: value
        for name, value in source.items()
        if name not in PASSPHRASE_VARIABLES and name not in SYSTEMD_VARIABLES
    }
    environment.update(BORG_SETTINGS)
    environment.update(overrides or {})
    return environment


def parse_stderr_line(line: str) -> list[BorgEvent]:
    """The events in one line of borg's ``--log-json`` stderr; anything unreadable becomes a warning."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return []
    record = _json_object(text)
    if record is not None:
        return [_event(record, text)]
    # A prompt borg printed without a newline can glue plain text to the next JSON line.
    start = text.find('{"')
    if start > 0:
        record = _json_object(text[start:])
        if record is not None:
            return [_plain_text(text[:start]), _event(record, text[start:])]
    return [_plain_text(text)]


class LineSplitter:
    """Bytes in, complete decoded lines out; an endless line is cut at ``max_line_bytes``."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES, encoding: str = "utf-8") -> None:
        self._buffer = bytearray()
        self._max_line_bytes = max_line_bytes
        self._encoding = encoding

    def feed(self, chunk: bytes) -> list[str]:
        return [_decode(line, self._encoding) for line in self.feed_bytes(chunk)]

    def feed_bytes(self, chunk: bytes) -> list[bytes]:
        """The complete lines, undecoded, without their line ends."""
        self._buffer += chunk
        lines = self._buffer.split(b"\n")
        self._buffer = bytearray(lines.pop())
        while len(self._buffer) > self._max_line_bytes:
            lines.append(self._buffer[: self._max_line_bytes])
            del self._buffer[: self._max_line_bytes]
        return lines

    def flush(self) -> list[str]:
        return [_decode(line, self._encoding) for line in self.flush_bytes()]

    def flush_bytes(self) -> list[bytes]:
        rest = self._buffer
        self._buffer = bytearray()
        return [rest] if rest else []


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
    grace_period: float = CANCEL_GRACE_SECONDS,
    kill_delay: float = 5.0,
) -> BorgResult:
    """Run borg to completion and return what it reported, or raise errors.BorgFailed.

    Exit codes 0, 1 and 100..127 (warnings) are success. When the calling scope is cancelled,
    borg gets SIGINT, after ``grace_period`` seconds SIGTERM, after ``kill_delay`` more seconds
    SIGKILL; it is always reaped before the cancellation propagates.

    With ``on_stdout``, borg's stdout is handed over chunk by chunk as it arrives (borg waits
    while the callback does) instead of being collected in the result.
    """
    secrets = (passphrase,) if passphrase else ()
    environment = borg_environment(env)
    environment["PYTHONIOENCODING"] = command.output_encoding
    output = _BorgOutput(on_event, secrets, command.output_encoding, on_stdout)
    process = _spawn([*borg, *command.args], environment, passphrase, cwd, command.capabilities)
    if on_start is not None:
        on_start(process.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.read_stdout, process.stdout)
            nursery.start_soon(output.read_stderr, process.stderr)
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
    json_result = output.json_result() if succeeded and command.json_output else None
    result = BorgResult(exit_code, json_result, list(output.log), output.stdout_text())
    if not succeeded:
        raise errors.borg_error(result, secrets=secrets, repository=command.repository)
    return result


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
        read_fd = _passphrase_pipe(passphrase)
        environment["BORG_PASSPHRASE_FD"] = str(read_fd)
        pass_fds = (read_fd,)
    try:
        return ChildProcess(argv, environment, cwd, pass_fds, capabilities)
    finally:
        if read_fd is not None:
            os.close(read_fd)


def _passphrase_pipe(passphrase: str) -> int:
    """A pipe holding the whole passphrase with its write end closed; returns the read end.

    Borg reads the fd once, to EOF, and strips trailing newlines.
    """
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        remaining = memoryview(passphrase.encode("utf-8"))
        while remaining:
            written = os.write(write_fd, remaining)
            remaining = remaining[written:]
    except BlockingIOError:
        os.close(read_fd)
        raise ValueError("the passphrase is longer than a pipe can hold") from None
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


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
        while await stream.receive_some(_READ_SIZE):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _exit_code(returncode: int) -> int:
    """Borg's own convention: killed by signal N reads as 128 + N."""
    return errors.EXIT_SIGNAL_BASE - returncode if returncode < 0 else returncode


class _BorgOutput:
    """Collects stdout and turns stderr lines into events as they arrive."""

    def __init__(self, on_event: Callable[[BorgEvent], None] | None, secrets: Sequence[str],
                 encoding: str = "utf-8", on_stdout: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        self.log: deque[LogMessage] = deque(maxlen=KEPT_LOG_MESSAGES)
        self._on_event = on_event
        self._secrets = tuple(secrets)
        self._encoding = encoding
        self._on_stdout = on_stdout
        self._stdout = bytearray()
        self._stderr_lines = LineSplitter(encoding=encoding)
        self.exited = trio.Event()

    async def read_stdout(self, stream: trio.abc.ReceiveStream | None) -> None:
        if stream is None:
            return
        while chunk := await stream.receive_some(_READ_SIZE):
            if self._on_stdout is not None:
                await self._on_stdout(chunk)
            else:
                self._stdout += chunk

    async def read_stderr(self, stream: trio.abc.ReceiveStream | None) -> None:
        if stream is None:
            return
        last_read = -BUSY_READ_INTERVAL
        while chunk := await stream.receive_some(_READ_SIZE):
            for line in self._stderr_lines.feed_bytes(chunk):
                self._handle_raw_line(line)
            now = trio.current_time()
            if now - last_read < BUSY_READ_INTERVAL and not self.exited.is_set():
                with trio.move_on_after(BUSY_READ_INTERVAL):
                    await self.exited.wait()
            last_read = now

    def finish(self) -> None:
        for line in self._stderr_lines.flush_bytes():
            self._handle_raw_line(line)

    def _handle_raw_line(self, line: bytes | bytearray) -> None:
        if line.endswith(_LISTED_ITEM_END) and line.startswith(_LISTED_ITEM_START):
            if self._on_event is not None:
                self._on_event(ListedItem(bytes(line), self._encoding, self._secrets))
            return
        self._handle_line(_decode(line, self._encoding))

    def stdout_text(self) -> str:
        return _decode(self._stdout, self._encoding)

    def json_result(self) -> Any | None:
        text = _decode(self._stdout, self._encoding).strip()
        if not text:
            self.log.append(_plain_text("borg printed no JSON result"))
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            self.log.append(_plain_text(f"borg's JSON result could not be read: {error}"))
            return None

    def _handle_line(self, line: str) -> None:
        for event in parse_stderr_line(line):
            if isinstance(event, LogMessage):
                event = _as_text(event, self._secrets)
                self.log.append(event)
            if self._on_event is not None:
                self._on_event(event)


def _as_text(message: LogMessage, secrets: Sequence[str]) -> LogMessage:
    """The message without secrets, and with a file name's bytes that are not UTF-8 as \\xXX."""
    text = printable(message.message)
    if secrets:
        text = redact(text, secrets)
    if text is message.message:
        return message
    return LogMessage(message.levelname, message.name, text, message.msgid, message.time)


def _decode(data: bytes | bytearray, encoding: str = "utf-8") -> str:
    return bytes(data).decode(encoding, errors="replace")


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _plain_text(text: str) -> LogMessage:
    return LogMessage(levelname="WARNING", name="borg", message=text, msgid=None, time=None)


def _event(record: dict[str, Any], text: str) -> BorgEvent:
    kind = record.get("type")
    if kind == "archive_progress":
        return ArchiveProgress(
            original_size=_int(record.get("original_size")),
            compressed_size=_int(record.get("compressed_size")),
            deduplicated_size=_int(record.get("deduplicated_size")),
            nfiles=_int(record.get("nfiles")),
            path=_str(record.get("path")),
            finished=record.get("finished") is True,
            time=_float(record.get("time")),
        )
    if kind == "progress_percent":
        info = record.get("info")
        return ProgressPercent(
            operation=_int(record.get("operation")),
            msgid=_str(record.get("msgid")),
            current=_number(record.get("current")),
            total=_number(record.get("total")),
            info=info if isinstance(info, list) else None,
            message=_str(record.get("message")),
            finished=record.get("finished") is True,
        )
    if kind == "progress_message":
        return ProgressMessage(
            operation=_int(record.get("operation")),
            msgid=_str(record.get("msgid")),
            message=_str(record.get("message")),
            finished=record.get("finished") is True,
        )
    if kind == "file_status":
        status, path = _str(record.get("status")), _str(record.get("path"))
        if status is not None and path is not None:
            return FileStatus(status, path)
        return _plain_text(text)
    if kind == "log_message":
        return LogMessage(
            levelname=_str(record.get("levelname")) or "CRITICAL",
            name=_str(record.get("name")) or "borg",
            message=_str(record.get("message")) or "",
            msgid=_str(record.get("msgid")),
            time=_float(record.get("time")),
        )
    message = _str(record.get("message"))
    if message is not None:
        # Prompts (question_prompt, question_accepted_false, ...) and types borg may add later.
        return LogMessage(
            levelname="WARNING",
            name=f"borg.{kind}" if isinstance(kind, str) else "borg",
            message=message,
            msgid=_str(record.get("msgid")),
            time=_float(record.get("time")),
        )
    return _plain_text(text)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
