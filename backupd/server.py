"""The Unix socket: connections, msgpack-rpc framing, limits, and one task per request."""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket as stdlib_socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import trio

from backupctl.protocol import (
    ErrorCode,
    Message,
    ProtocolError,
    Request,
    Response,
    RpcError,
    new_unpacker,
    pack,
    parse,
)
from backupd.access import Peer, peer_of
from backupd.events import EventHub, NotificationFilter, Subscriber, SubscriberOverflow

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
MAX_IN_FLIGHT_PER_CONNECTION = 32
RECEIVE_SIZE = 64 * 1024
REFUSAL_TIMEOUT = 5.0

Dispatch = Callable[[Request, Peer, Callable[[NotificationFilter], None]], Awaitable[Any]]


class SocketUnusable(Exception):
    """The socket cannot be set up: another live daemon answers on it, or a setting is wrong."""


def bind_unix_socket(path: Path, mode: int = 0o660, group: str | None = None) -> trio.socket.SocketType:
    """Bind and listen on path, replacing a stale socket file but never a live one.

    The file is created with the mode (through the umask, so it is never wider) and group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketUnusable(f"{path} exists and is not a socket")
        if _answers(path):
            raise SocketUnusable(f"another daemon is listening on {path}")
        path.unlink()
    sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    previous_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous_umask)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise SocketUnusable(f"socket_group {group!r} is not a group on this system") from None
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    sock.listen(stdlib_socket.SOMAXCONN)
    return trio.socket.from_stdlib_socket(sock)


def _answers(path: Path) -> bool:
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
        return True
    except OSError as error:
        return error.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()


class Server:
    def __init__(
        self,
        listener_socket: trio.socket.SocketType,
        dispatch: Dispatch,
        hub: EventHub,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._listener = trio.SocketListener(listener_socket)
        self._max_connections = max_connections
        self._dispatch = dispatch
        self._hub = hub
        self._connections = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.serve_listeners(self._handle, [self._listener], task_status=task_status)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._connections >= self._max_connections:
                await _refuse(stream, self._max_connections)
                return
            self._connections += 1
            try:
                await Connection(stream, self._dispatch, self._hub).serve()
            except Exception:
                # Whatever one connection does, the others and the daemon carry on.
                log.exception("a connection failed on a bug")
            finally:
                self._connections -= 1


async def _refuse(stream: trio.SocketStream, limit: int) -> None:
    """Answer the first request of a connection over the limit with busy, then close."""
    error = RpcError(ErrorCode.BUSY, f"Too many connections (at most {limit}); try again later",
                     {"job": None, "connections": limit})
    unpacker = new_unpacker()
    with trio.move_on_after(REFUSAL_TIMEOUT):
        try:
            while data := await stream.receive_some(RECEIVE_SIZE):
                unpacker.feed(data)
                for value in unpacker:
                    message = parse(value)
                    if isinstance(message, Request):
                        await stream.send_all(pack(Response(message.msgid, error, None)))
                        return
        except Exception:
            return


class Connection:
    def __init__(self, stream: trio.SocketStream, dispatch: Dispatch, hub: EventHub) -> None:
        self._stream = stream
        self._dispatch = dispatch
        self._hub = hub
        self._send_lock = trio.Lock()
        self._in_flight = trio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)
        self._peer = peer_of(stream.socket)
        self._subscription: Subscriber | None = None
        self._nursery: trio.Nursery | None = None

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._read_requests(nursery)
            finally:
                if self._subscription is not None:
                    self._hub.unsubscribe(self._subscription)
                    self._subscription.close()

    async def _read_requests(self, nursery: trio.Nursery) -> None:
        unpacker = new_unpacker()
        while True:
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                unpacker.feed(data)
            except msgpack.BufferFull:
                log.warning("closing connection of pid %s: message over the size limit", self._peer.pid)
                nursery.cancel_scope.cancel()
                return
            while True:
                try:
                    value = next(unpacker)
                except StopIteration:
                    break
                except Exception:
                    await self._send_error(None, "The stream is not valid msgpack; closing")
                    nursery.cancel_scope.cancel()
                    return
                await self._accept(value, nursery)

    async def _accept(self, value: Any, nursery: trio.Nursery) -> None:
        try:
            message: Message = parse(value)
        except ProtocolError as error:
            await self._send_error(error.msgid, f"Invalid message: {error}")
            return
        if isinstance(message, Request):
            await self._in_flight.acquire()
            nursery.start_soon(self._answer, message)

    async def _answer(self, request: Request) -> None:
        try:
            try:
                result = await self._dispatch(request, self._peer, self._subscribe)
                reply = pack(Response(request.msgid, None, result))
            except RpcError as error:
                reply = pack(Response(request.msgid, error, None))
            except Exception:
                log.exception("request %r failed on a bug", request.method)
                error = RpcError(ErrorCode.INTERNAL, f"{request.method} failed on an internal error")
                reply = pack(Response(request.msgid, error, None))
            await self._send(reply)
        finally:
            self._in_flight.release()

    async def _send_error(self, msgid: int | None, message: str) -> None:
        error = RpcError(ErrorCode.INVALID_REQUEST, message)
        await self._send(pack(Response(msgid, error, None)))

    async def _send(self, data: bytes) -> None:
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _subscribe(self, shown: NotificationFilter) -> None:
        if self._subscription is None and self._nursery is not None:
            self._subscription = self._hub.subscribe()
            self._nursery.start_soon(self._forward_notifications, self._subscription, shown)

    async def _forward_notifications(self, subscriber: Subscriber, shown: NotificationFilter) -> None:
        try:
            while batch := await subscriber.next_batch():
                for notification in batch:
                    if (visible := shown(notification)) is not None:
                        await self._send(pack(visible))
        except SubscriberOverflow:
            log.warning("closing connection of pid %s: it stopped reading notifications", self._peer.pid)
            await self._stream.aclose()
