"""The trio client of the backupd socket: concurrent calls on one connection, answered in any order.

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio

from backupctl.client import CONNECT_RETRY_INTERVAL, RECEIVE_SIZE, DaemonUnreachable, result_of, socket_path
from backupctl.protocol import Notification, Request, Response, RpcError, new_unpacker, pack, parse


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
            stream = await _connect(target)
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
            return result_of(response)
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
            waiting = self._waiting.values() if message.msgid is None else [self._waiting.get(message.msgid)]
            for reply_in in waiting:
                if reply_in is not None:
                    with suppress(trio.WouldBlock):
                        reply_in.send_nowait(message)
        elif isinstance(message, Notification):
            self._events_in.send_nowait(message)



async def _connect(path: str) -> trio.SocketStream:
    """Connect, waiting out a full queue of new connections at the daemon (EAGAIN), which
    trio.open_unix_socket would take for a connection made."""
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            await trio.sleep(CONNECT_RETRY_INTERVAL)
            continue
        except OSError:
            sock.close()
            raise
        return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


__all__ = ["AsyncClient", "DaemonUnreachable", "RpcError"]
