"""What a running borg writes: stdout collected or handed on, stderr read into events as it arrives."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import trio

from backupd.borg.lines import LineSplitter, decode
from backupd.borg.log_json import BorgEvent, ListedItems, LogMessage, as_text, is_listed_item, parse_stderr_line, plain_text

KEPT_LOG_MESSAGES = 50
READ_SIZE = 65536
# While borg writes line after line (one per item of a restore), its stderr is read at most
# this often, so each wake-up takes many lines at once: as long as the pipe takes to fill at
# the fastest borg writes, and never longer than the longest wait.
FASTEST_STDERR_BYTES_PER_SECOND = 3 * 1024 * 1024
LONGEST_BUSY_READ_INTERVAL = 0.1
# Lines handled in one step of the event loop: a read of the whole pipe is thousands.
LINES_PER_STEP = 512


class BorgOutput:
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
        while chunk := await stream.receive_some(READ_SIZE):
            if self._on_stdout is not None:
                await self._on_stdout(cast(bytes, chunk))  # a process's pipe reads bytes
            else:
                self._stdout += chunk

    async def read_stderr(self, stream: trio.abc.ReceiveStream | None, pipe_bytes: int = READ_SIZE) -> None:
        """Lines as they come; a pipe of ``pipe_bytes`` is read whole at each wake-up."""
        if stream is None:
            return
        interval = min(pipe_bytes / FASTEST_STDERR_BYTES_PER_SECOND, LONGEST_BUSY_READ_INTERVAL)
        last_read = -interval
        while chunk := await stream.receive_some(pipe_bytes):
            lines = self._stderr_lines.feed_bytes(chunk)
            for start in range(0, len(lines), LINES_PER_STEP):
                if start:
                    await trio.lowlevel.checkpoint()
                self._handle_raw_lines(lines[start:start + LINES_PER_STEP])
            now = trio.current_time()
            if now - last_read < interval and not self.exited.is_set():
                with trio.move_on_after(interval):
                    await self.exited.wait()
            last_read = now

    def finish(self) -> None:
        self._handle_raw_lines(self._stderr_lines.flush_bytes())

    def stdout_text(self) -> str:
        return decode(self._stdout, self._encoding)

    def json_result(self) -> Any | None:
        text = decode(self._stdout, self._encoding).strip()
        if not text:
            self.log.append(plain_text("borg printed no JSON result"))
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            self.log.append(plain_text(f"borg's JSON result could not be read: {error}"))
            return None

    def _handle_raw_lines(self, lines: list[bytes]) -> None:
        """Events in the order borg wrote them, each run of ``--list`` lines as one."""
        listed: list[bytes] = []
        for line in lines:
            if is_listed_item(line):
                listed.append(line)
                continue
            if listed:
                self._hand_on_listed(listed)
                listed = []
            self._handle_line(decode(line, self._encoding))
        if listed:
            self._hand_on_listed(listed)

    def _hand_on_listed(self, lines: list[bytes]) -> None:
        if self._on_event is not None:
            self._on_event(ListedItems(tuple(lines), self._encoding, self._secrets))

    def _handle_line(self, line: str) -> None:
        for event in parse_stderr_line(line):
            if isinstance(event, LogMessage):
                event = as_text(event, self._secrets)
                self.log.append(event)
            if self._on_event is not None:
                self._on_event(event)
