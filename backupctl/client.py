"""Clients of the backupd socket: `Client` (blocking) and `AsyncClient` (trio).

    with Client() as client:
        overview = client.call("status")

    async with AsyncClient.connect() as client:
        await client.call("subscribe")
        async for event in client.events():
            ...
"""

from __future__ import annotations

import itertools
import math
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

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


class DaemonUnreachable(Exception):
    """The daemon's socket cannot be reached, or the connection broke."""


def socket_path(path: str | os.PathLike[str] | None = None) -> str:
    """The socket to use: the argument, else $BACKUPD_SOCKET, else the default."""
    return os.fspath(path) if path else os.environ.get("BACKUPD_SOCKET") or DEFAULT_SOCKET


def _result(response: Response) -> Any:
    if response.error is not None:
        raise response.error
    return response.result


class Client:
    """A blocking client: one connection, one call at a time, notifications queued."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float | None = 60.0) -> None:
        self.path = socket_path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as error:
            self._sock.close()
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
            if isinstance(message, Response) and message.msgid == msgid:
                return _result(message)
            if isinstance(message, Notification):
                self._notifications.append(message)

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


class AsyncClient:
    """A trio client: concurrent calls on one connection, answered in any order."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()
        self._msgids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Response]] = {}
        self._events_in, self._events_out = trio.open_memory_channel[Notification](math.inf)
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: str | os.PathLike[str] | None = None) -> AsyncIterator[AsyncClient]:
        target = socket_path(path)
        try:
            stream = await trio.open_unix_socket(target)
        except OSError as error:
            raise DaemonUnreachable(f"cannot connect to backupd at {target}: {error.strerror or error}") from None
        client = cls(stream)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(client._read_messages)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The caller's own error (RpcError, ...) comes out as itself, not wrapped by the nursery.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        msgid = next(self._msgids)
        reply_in, reply_out = trio.open_memory_channel[Response](1)
        self._waiting[msgid] = reply_in
        try:
            async with self._send_lock:
                try:
                    await self._stream.send_all(pack(Request(msgid, method, params or {})))
                except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                    raise DaemonUnreachable(f"lost the connection to backupd: {error}") from None
            try:
                response = await reply_out.receive()
            except trio.EndOfChannel:
                raise DaemonUnreachable("backupd closed the connection") from None
            return _result(response)
        finally:
            self._waiting.pop(msgid, None)

    async def events(self) -> AsyncIterator[Notification]:
        """Notifications, after a call to subscribe; ends when the daemon closes."""
        async for notification in self._events_out:
            yield notification

    async def _read_messages(self) -> None:
        unpacker = new_unpacker()
        try:
            while data := await self._stream.receive_some(RECEIVE_SIZE):
                unpacker.feed(data)
                for value in unpacker:
                    self._deliver(parse(value))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            for reply_in in self._waiting.values():
                reply_in.close()
            self._events_in.close()

    def _deliver(self, message: Notification | Response | Request) -> None:
        if isinstance(message, Response):
            reply_in = self._waiting.get(message.msgid)
            if reply_in is not None:
                reply_in.send_nowait(message)
        elif isinstance(message, Notification):
            self._events_in.send_nowait(message)


__all__ = ["AsyncClient", "Client", "DaemonUnreachable", "RpcError", "socket_path"]
