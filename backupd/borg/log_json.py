"""borg's ``--log-json`` stderr read into typed events; ``--list`` lines kept as their bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from backupctl.paths import printable
from backupd.borg.lines import decode
from backupd.redaction import redact

_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
_WARNING_LEVELS = frozenset({"WARNING", *_ERROR_LEVELS})

# How borg's JsonFormatter writes a line of its list logger: recognised without decoding it.
_LISTED_ITEM_START = b'{"type": "log_message", '
_LISTED_ITEM_END = b'"levelname": "INFO", "name": "borg.output.list"}'
# borg's --log-json record: {"type": ..., "time": ..., "message": "...", "levelname": ..., ...}.
# A quote inside the message is escaped, so the first '", "levelname"' after it ends it.
_MESSAGE_START = b'"message": "'
_MESSAGE_END = b'", "levelname"'


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

    @property
    def is_error(self) -> bool:
        """Logged at ERROR or CRITICAL: what failed, or damage found."""
        return self.levelname in _ERROR_LEVELS

    @property
    def at_least_warning(self) -> bool:
        return self.levelname in _WARNING_LEVELS


@dataclass(frozen=True)
class FileStatus:
    status: str
    path: str


@dataclass(frozen=True, slots=True)
class ListedItem:
    """One line of borg's ``--list`` output (an item extracted, an archive pruned), kept as borg wrote it."""

    line: bytes
    encoding: str
    secrets: tuple[str, ...]

    @property
    def message(self) -> str:
        record = json_object(decode(self.line, self.encoding))
        message = _str(record.get("message")) if record is not None else None
        return as_text(plain_text(message or ""), self.secrets).message

    @property
    def path(self) -> str:
        """The item's archive path. Not redacted; for measuring, not for showing."""
        return os.fsdecode(listed_path(self.line, self.encoding))


@dataclass(frozen=True, slots=True)
class ListedItems:
    """The ``--list`` lines borg wrote between two reads of its stderr, handed on together: a
    restore lists every item it extracts, and only the latest one is ever shown."""

    lines: tuple[bytes, ...]
    encoding: str
    secrets: tuple[str, ...]

    def __iter__(self) -> Iterator[ListedItem]:
        return (ListedItem(line, self.encoding, self.secrets) for line in self.lines)

    @property
    def last(self) -> ListedItem:
        return ListedItem(self.lines[-1], self.encoding, self.secrets)

    def paths(self) -> Iterator[bytes]:
        """Each item's archive path as file system bytes. Not redacted; for measuring, not for showing."""
        encoding = self.encoding
        for line in self.lines:
            yield listed_path(line, encoding)


def listed_path(line: bytes, encoding: str) -> bytes:
    """The message of a ``--list`` line, an archive path, cut out of the line without decoding
    all of it when it needs no unescaping."""
    start = line.find(_MESSAGE_START)
    end = line.find(_MESSAGE_END, start)
    if start < 0 or end < 0:
        return os.fsencode(_str((json_object(decode(line, encoding)) or {}).get("message")) or "")
    quoted = line[start + len(_MESSAGE_START) - 1:end + 1]
    if b"\\" not in quoted and quoted.isascii():
        return quoted[1:-1]
    try:
        return os.fsencode(str(json.loads(decode(quoted, encoding))))
    except ValueError:
        return b""


BorgEvent = ArchiveProgress | ProgressPercent | ProgressMessage | LogMessage | FileStatus | ListedItems


def is_listed_item(line: bytes | bytearray) -> bool:
    """Whether a raw stderr line is one of borg's ``--list`` lines, told by its bytes alone."""
    return line.endswith(_LISTED_ITEM_END) and line.startswith(_LISTED_ITEM_START)


def parse_stderr_line(line: str) -> list[BorgEvent]:
    """The events in one line of borg's ``--log-json`` stderr; anything unreadable becomes a warning."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return []
    record = json_object(text)
    if record is not None:
        return [_event(record, text)]
    # A prompt borg printed without a newline can glue plain text to the next JSON line.
    start = text.find('{"')
    if start > 0:
        record = json_object(text[start:])
        if record is not None:
            return [plain_text(text[:start]), _event(record, text[start:])]
    return [plain_text(text)]


def as_text(message: LogMessage, secrets: Sequence[str]) -> LogMessage:
    """The message without secrets, and with a file name's bytes that are not UTF-8 as \\xXX."""
    text = printable(message.message)
    if secrets:
        text = redact(text, secrets)
    if text is message.message:
        return message
    return LogMessage(message.levelname, message.name, text, message.msgid, message.time)


def plain_text(text: str) -> LogMessage:
    """Text borg wrote that is not a JSON record, taken as a warning."""
    return LogMessage(levelname="WARNING", name="borg", message=text, msgid=None, time=None)


def json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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
        return plain_text(text)
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
    return plain_text(text)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
