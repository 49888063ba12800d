"""What a running borg writes: stdout collected or handed on, stderr read into events as it arrives."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import trio

from backupd.borg.lines import LineSplitter, decode
from backupd.borg.log_json import BorgEvent, ListedItem, LogMessage, as_text, is_listed_item, parse_stderr_line, plain_text

KEPT_LOG_MESSAGES = 50
READ_SIZE = 65536
# While borg writes line after line (one per item of a restore), its stderr is read at most
# this often, so each wake-up takes many lines at once.
BUSY_READ_INTERVAL = 0.02


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

    async def read_stderr(self, stream: trio.abc.ReceiveStream | None) -> None:
        if stream is None:
            return
        last_read = -BUSY_READ_INTERVAL
        while chunk := await stream.receive_some(READ_SIZE):
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

    def _handle_raw_line(self, line: bytes | bytearray) -> None:
        if is_listed_item(line):
            if self._on_event is not None:
                self._on_event(ListedItem(bytes(line), self._encoding, self._secrets))
            return
        self._handle_line(decode(line, self._encoding))

    def _handle_line(self, line: str) -> None:
        for event in parse_stderr_line(line):
            if isinstance(event, LogMessage):
                event = as_text(event, self._secrets)
                self.log.append(event)
            if self._on_event is not None:
                self._on_event(event)
