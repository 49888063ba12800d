"""The wire format shared by backupd and its clients: msgpack-rpc over a Unix stream socket.

Messages are msgpack arrays written back to back on the stream:
request ``[0, msgid, method, params]``, response ``[1, msgid, error, result]`` and
notification ``[2, method, params]``. ``params`` is an empty array or an array holding one
map of named options. An error is a map ``{"code", "message", "data"?}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import msgpack

from backupctl.paths import printable, to_wire

API_VERSION = 1
DEFAULT_SOCKET = "/run/backupd/backupd.sock"
MAX_MESSAGE_SIZE = 1024 * 1024


class MessageType(IntEnum):
    REQUEST = 0
    RESPONSE = 1
    NOTIFICATION = 2


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    METHOD_NOT_FOUND = "method_not_found"
    INVALID_PARAMS = "invalid_params"
    FORBIDDEN = "forbidden"
    NOT_CONFIGURED = "not_configured"
    BUSY = "busy"
    NOT_FOUND = "not_found"
    REPOSITORY_NOT_FOUND = "repository_not_found"
    REPOSITORY_EXISTS = "repository_exists"
    PASSPHRASE_WRONG = "passphrase_wrong"
    REPOSITORY_UNREACHABLE = "repository_unreachable"
    REPOSITORY_LOCKED = "repository_locked"
    REPOSITORY_INVALID = "repository_invalid"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_CHANGED = "host_key_changed"
    DISK_FULL = "disk_full"
    STATE_UNWRITABLE = "state_unwritable"
    BORG_FAILED = "borg_failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    PRUNE_REFUSED = "prune_refused"
    HOOK_FAILED = "hook_failed"
    RESTORE_FAILED = "restore_failed"
    CONFIG_UNREADABLE = "config_unreadable"
    BUCKET_NOT_FOUND = "bucket_not_found"
    MIRROR_FAILED = "mirror_failed"
    MIRROR_TAKEN_OVER = "mirror_taken_over"
    INTERNAL = "internal"


class ProblemCode(StrEnum):
    """The overview's problem codes that are not error codes (a problem may carry any ErrorCode too)."""

    OVERDUE = "overdue"
    CHECK_FAILED = "check_failed"
    SNAPSHOT_INCOMPLETE = "snapshot_incomplete"
    STATE_UNREADABLE = "state_unreadable"
    RESTORE_INCOMPLETE = "restore_incomplete"
    RESTORE_PARTIAL = "restore_partial"


class JobKind(StrEnum):
    """Kinds of job; more may come, so a record keeps a kind it does not know as a string."""

    SNAPSHOT = "snapshot"
    RESTORE = "restore"
    CONFIGURE = "configure"
    RESET = "reset"
    CHECK = "check"
    PRUNE = "prune"
    MIRROR = "mirror"
    MIRROR_SETUP = "mirror_setup"
    MIRROR_OFF = "mirror_off"


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    """Who started a job: an API call, the daemon's schedule, or an automatic retry after a failure."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    RETRY = "retry"


class RpcError(Exception):
    """An error as it travels on the wire: a stable code, a sentence for people, details."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        message = printable(message)
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.data = data or {}

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            wire["data"] = self.data
        return wire

    @classmethod
    def from_wire(cls, error: Any) -> RpcError:
        if isinstance(error, dict):
            data = error.get("data")
            return cls(
                str(error.get("code", ErrorCode.INTERNAL)),
                str(error.get("message", "")),
                data if isinstance(data, dict) else None,
            )
        return cls(ErrorCode.INTERNAL, f"unexpected error value: {error!r}")

    def __repr__(self) -> str:
        return f"RpcError({self.code!r}, {self.message!r}, {self.data!r})"


class ProtocolError(Exception):
    """A message that is valid msgpack but not a msgpack-rpc message."""

    def __init__(self, message: str, msgid: int | None = None) -> None:
        super().__init__(message)
        self.msgid = msgid


@dataclass(frozen=True)
class Request:
    msgid: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    msgid: int | None  # nil when the daemon could not read the request it answers
    error: RpcError | None
    result: Any


@dataclass(frozen=True)
class Notification:
    method: str
    params: dict[str, Any] = field(default_factory=dict)


Message = Request | Response | Notification

_MSGID_LIMIT = 2**32


def pack(message: Message) -> bytes:
    value = _message_value(message)
    try:
        return msgpack.packb(value, use_bin_type=True)
    except UnicodeEncodeError:
        # Only a path that is not UTF-8 gets here: it goes out as bin (see backupctl.paths).
        return msgpack.packb(to_wire(value), use_bin_type=True)


def pack_leniently(message: Message) -> bytes:
    """pack(), with a value msgpack has no type for sent as its text instead of failing."""
    return msgpack.packb(to_wire(_message_value(message)), use_bin_type=True,
                         default=lambda unknown: printable(repr(unknown)))


def _message_value(message: Message) -> list[Any]:
    if isinstance(message, Request):
        return [MessageType.REQUEST, message.msgid, message.method, _wire_params(message.params)]
    if isinstance(message, Response):
        error = message.error.to_wire() if message.error is not None else None
        return [MessageType.RESPONSE, message.msgid, error, message.result]
    return [MessageType.NOTIFICATION, message.method, _wire_params(message.params)]


def _wire_params(params: dict[str, Any] | Any) -> list[Any]:
    return [params] if params else []


def new_unpacker() -> msgpack.Unpacker:
    """A streaming decoder whose buffer refuses anything past the message size limit."""
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        max_buffer_size=MAX_MESSAGE_SIZE,
    )


def parse(value: Any) -> Message:
    """Turn one decoded msgpack value into a message, or raise ProtocolError."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ProtocolError("a message must be a msgpack array")
    kind = value[0]
    if kind == MessageType.REQUEST and len(value) == 4 and type(kind) is int:
        msgid = _msgid(value[1])
        return Request(msgid, _method(value[2], msgid), _params(value[3], msgid))
    if kind == MessageType.RESPONSE and len(value) == 4 and type(kind) is int:
        answered: int | None = None if value[1] is None and value[2] is not None else _msgid(value[1])
        error = RpcError.from_wire(value[2]) if value[2] is not None else None
        return Response(answered, error, value[3])
    if kind == MessageType.NOTIFICATION and len(value) == 3 and type(kind) is int:
        return Notification(_method(value[1], None), _params(value[2], None))
    raise ProtocolError("not a msgpack-rpc request, response or notification", _guess_msgid(value))


def _msgid(value: Any) -> int:
    if type(value) is not int or not 0 <= value < _MSGID_LIMIT:
        raise ProtocolError("msgid must be an unsigned 32-bit integer")
    return value


def _guess_msgid(value: list[Any] | tuple[Any, ...]) -> int | None:
    if len(value) >= 2 and type(value[1]) is int and 0 <= value[1] < _MSGID_LIMIT:
        return value[1]
    return None


def _method(value: Any, msgid: int | None) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("method name is not UTF-8", msgid) from None
    if not isinstance(value, str):
        raise ProtocolError("method name must be a string", msgid)
    return value


def _params(value: Any, msgid: int | None) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not isinstance(value, (list, tuple)):
        raise ProtocolError("params must be an array", msgid)
    if not value:
        return {}
    if len(value) == 1 and isinstance(value[0], dict):
        return value[0]
    if len(value) == 1 and value[0] is None:
        return {}
    raise ProtocolError("params must be empty or hold one map of named options", msgid)
