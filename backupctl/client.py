"""The blocking client of the backupd socket; needs nothing but msgpack.

    with Client() as client:
        overview = client.call("status")

`backupctl.async_client.AsyncClient` is the same for trio programs.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from backupctl.protocol import (
    DEFAULT_SOCKET,
    Notification,
    Request,
    Response,
    RpcError,
    new_unpacker,
    pack,
    parse,
)

RECEIVE_SIZE = 64 * 1024
# A full queue of new connections at the daemon (EAGAIN) is waited out, this often, within the timeout.
CONNECT_RETRY_INTERVAL = 0.005


class DaemonUnreachable(Exception):
    """The daemon's socket cannot be reached, or the connection broke."""


def socket_path(path: str | os.PathLike[str] | None = None) -> str:
    """The socket to use: the argument, else $BACKUPD_SOCKET, else the default."""
    return os.fspath(path) if path else os.environ.get("BACKUPD_SOCKET") or DEFAULT_SOCKET


def result_of(response: Response) -> Any:
    if response.error is not None:
        raise response.error
    return response.result


def _connect(path: str, timeout: float | None) -> socket.socket:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if deadline is not None and time.monotonic() >= deadline:
                raise
            time.sleep(CONNECT_RETRY_INTERVAL)
        except OSError:
            sock.close()
            raise


class Client:
    """A blocking client: one connection, one call at a time, notifications queued."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float | None = 60.0) -> None:
        self.path = socket_path(path)
        try:
            self._sock = _connect(self.path, timeout)
        except OSError as error:
            raise DaemonUnreachable(f"cannot connect to backupd at {self.path}: {error.strerror or error}") from None
        self._unpacker = new_unpacker()
        self._msgids = itertools.count(1)
        self._notifications: deque[Notification] = deque()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its result; a daemon error raises RpcError."""
        msgid = next(self._msgids)
        self._send(pack(Request(msgid, method, params or {})))
        while True:
            message = self._receive()
            if isinstance(message, Response) and message.msgid in (msgid, None):
                return result_of(message)
            if isinstance(message, Notification):
                self._notifications.append(message)

    def paged(self, method: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a paged method (``snapshots``, ``jobs``), asking page after page."""
        cursor = ""
        while True:
            page = self.call(method, {**(params or {}), "cursor": cursor})
            yield from page[key]
            if page["cursor"] is None:
                return
            cursor = page["cursor"]

    def events(self) -> Iterator[Notification]:
        """Notifications, after a call to subscribe; ends when the daemon closes."""
        while True:
            while self._notifications:
                yield self._notifications.popleft()
            try:
                message = self._receive()
            except DaemonUnreachable:
                return
            if isinstance(message, Notification):
                yield message

    def set_timeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as error:
            raise DaemonUnreachable(f"lost the connection to backupd: {error}") from None

    def _receive(self) -> Notification | Response | Request:
        while True:
            for value in self._unpacker:
                return parse(value)
            try:
                data = self._sock.recv(RECEIVE_SIZE)
            except TimeoutError:
                raise
            except OSError as error:
                raise DaemonUnreachable(f"lost the connection to backupd: {error}") from None
            if not data:
                raise DaemonUnreachable("backupd closed the connection")
            self._unpacker.feed(data)


__all__ = ["Client", "DaemonUnreachable", "RpcError", "result_of", "socket_path"]
