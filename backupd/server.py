"""The Unix socket: connections, msgpack-rpc framing, limits, and one task per request."""

from __future__ import annotations

import errno
import grp
import logging
import math
import os
import resource
import socket as stdlib_socket
import stat
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import trio

from backupctl.protocol import (
    ErrorCode,
    Message,
    Notification,
    ProtocolError,
    Request,
    Response,
    RpcError,
    new_unpacker,
    pack,
    pack_leniently,
    parse,
)
from backupd.access import Level, Peer, peer_of
from backupd.events import EventHub, NotificationFilter, Subscriber, SubscriberOverflow

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_CONNECTIONS_PER_USER = 16
DEFAULT_IDLE_TIMEOUT = 60.0
MAX_IN_FLIGHT_PER_CONNECTION = 32
RECEIVE_SIZE = 64 * 1024
REFUSAL_TIMEOUT = 5.0
# Refused connections waiting for their first request to answer it; beyond that the error goes out at once.
MAX_REFUSALS = 64
# Descriptors the server leaves to jobs (borg's pipes, state and metrics files, hooks, ssh).
DESCRIPTORS_KEPT_FOR_JOBS = 128
MIN_SOCKET_BUDGET = 16

Dispatch = Callable[[Request, Peer, Callable[[NotificationFilter], None]], Awaitable[Any]]
LevelsOf = Callable[[Peer], frozenset[Level]]


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the server keeps, and for how long. Admins are counted only in sockets."""

    readers: int = DEFAULT_MAX_CONNECTIONS
    per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    sockets: int | None = None  # every socket the server holds at once; None: what RLIMIT_NOFILE leaves


def socket_budget() -> int:
    """The sockets the server may hold at once so that jobs still find descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - DESCRIPTORS_KEPT_FOR_JOBS, MIN_SOCKET_BUDGET)


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
        levels_of: LevelsOf,
        limits: ConnectionLimits = ConnectionLimits(),
    ) -> None:
        self._listener = trio.SocketListener(listener_socket)
        self._dispatch = dispatch
        self._hub = hub
        self._levels_of = levels_of
        self._limits = limits
        self._socket_budget = limits.sockets if limits.sockets is not None else socket_budget()
        self._sockets = 0
        self._readers = 0
        self._readers_by_uid: Counter[int] = Counter()
        self._refusals = 0

    async def run(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(self._handle, [self._listener], task_status=task_status)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._sockets >= self._socket_budget:
                return
            self._sockets += 1
            try:
                await self._admit(stream)
            except Exception:
                # Whatever one connection does, the others and the daemon carry on.
                log.exception("a connection failed on a bug")
            finally:
                self._sockets -= 1

    async def _admit(self, stream: trio.SocketStream) -> None:
        """Admins always get in; readers within their limits; anyone else gets forbidden."""
        peer = peer_of(stream.socket)
        levels = self._levels_of(peer)
        if Level.ADMIN in levels:
            await self._serve(stream, peer)
        elif not levels:
            await self._refuse(stream, RpcError(ErrorCode.FORBIDDEN, f"uid {peer.uid} may not use backupd"))
        elif self._readers >= self._limits.readers:
            await self._refuse(stream, _too_many(self._limits.readers))
        elif self._readers_by_uid[peer.uid] >= self._limits.per_user:
            await self._refuse(stream, _too_many(self._limits.per_user, peer.uid))
        else:
            self._readers += 1
            self._readers_by_uid[peer.uid] += 1
            try:
                await self._serve(stream, peer)
            finally:
                self._readers -= 1
                self._readers_by_uid[peer.uid] -= 1
                if not self._readers_by_uid[peer.uid]:
                    del self._readers_by_uid[peer.uid]

    async def _serve(self, stream: trio.SocketStream, peer: Peer) -> None:
        await Connection(stream, self._dispatch, self._hub, peer, self._limits.idle_timeout).serve()

    async def _refuse(self, stream: trio.SocketStream, error: RpcError) -> None:
        if self._refusals >= MAX_REFUSALS:
            await _answer_at_once(stream, error)
            return
        self._refusals += 1
        try:
            await _answer_first_request(stream, error)
        finally:
            self._refusals -= 1


def _too_many(limit: int, uid: int | None = None) -> RpcError:
    if uid is None:
        return RpcError(ErrorCode.BUSY, f"Too many connections (at most {limit}); try again later",
                        {"job": None, "connections": limit})
    return RpcError(ErrorCode.BUSY, f"Too many connections from uid {uid} (at most {limit}); try again later",
                    {"job": None, "connections": limit, "uid": uid})


async def _answer_at_once(stream: trio.SocketStream, error: RpcError) -> None:
    """The error with msgid nil, without waiting for a request: the connection is closed right after."""
    with trio.move_on_after(REFUSAL_TIMEOUT):
        try:
            await stream.send_all(pack(Response(None, error, None)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _answer_first_request(stream: trio.SocketStream, error: RpcError) -> None:
    """Answer the first request of a refused connection with error, then close."""
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


def _packed(message: Response | Notification, what: str) -> bytes:
    """The message packed; a value msgpack has no type for is a bug, sent as text rather than
    failing every later call that shows the same record."""
    try:
        return pack(message)
    except (TypeError, ValueError):
        log.exception("the answer to %r holds a value that cannot be packed; it is sent as text", what)
        return pack_leniently(message)


class Connection:
    """One client's connection. It is closed once it has sent no message for idle_timeout seconds
    while it has no request in flight and no subscription."""

    def __init__(
        self, stream: trio.SocketStream, dispatch: Dispatch, hub: EventHub, peer: Peer,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._stream = stream
        self._dispatch = dispatch
        self._hub = hub
        self._send_lock = trio.Lock()
        self._in_flight = trio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)
        self._peer = peer
        self._subscription: Subscriber | None = None
        self._nursery: trio.Nursery | None = None
        self._idle_timeout = idle_timeout
        self._requests_in_flight = 0
        self._reading = trio.CancelScope()

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                self._wait_while_idle()
                with self._reading:
                    await self._read_requests(nursery)
                if self._reading.cancelled_caught:
                    log.debug("closing connection of pid %s: idle for %g s", self._peer.pid, self._idle_timeout)
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
        self._reading.deadline = math.inf
        if isinstance(message, Request):
            await self._in_flight.acquire()
            self._requests_in_flight += 1
            nursery.start_soon(self._answer, message)
        else:
            self._wait_while_idle()

    async def _answer(self, request: Request) -> None:
        try:
            try:
                result = await self._dispatch(request, self._peer, self._subscribe)
                reply = _packed(Response(request.msgid, None, result), request.method)
            except RpcError as error:
                reply = pack(Response(request.msgid, error, None))
            except Exception:
                log.exception("request %r failed on a bug", request.method)
                internal = RpcError(ErrorCode.INTERNAL, f"{request.method} failed on an internal error")
                reply = pack(Response(request.msgid, internal, None))
            await self._send(reply)
        finally:
            self._in_flight.release()
            self._requests_in_flight -= 1
            self._wait_while_idle()

    def _wait_while_idle(self) -> None:
        """Start the idle clock when nothing keeps the connection busy."""
        if self._requests_in_flight == 0 and self._subscription is None:
            self._reading.deadline = trio.current_time() + self._idle_timeout

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
            self._reading.deadline = math.inf
            self._subscription = self._hub.subscribe()
            self._nursery.start_soon(self._forward_notifications, self._subscription, shown)

    async def _forward_notifications(self, subscriber: Subscriber, shown: NotificationFilter) -> None:
        try:
            while batch := await subscriber.next_batch():
                for notification in batch:
                    if (visible := shown(notification)) is not None:
                        await self._send(_packed(visible, visible.method))
        except SubscriberOverflow:
            log.warning("closing connection of pid %s: it stopped reading notifications", self._peer.pid)
            await self._stream.aclose()
