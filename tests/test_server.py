"""The server in this process: a real Unix socket, an async client, a dispatch written for each
test. Floods against a real daemon process are in test_connection_flood.py."""

from __future__ import annotations

import os
import socket as stdlib_socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from backupctl.async_client import AsyncClient
from backupctl.client import DaemonUnreachable
from backupctl.protocol import MAX_MESSAGE_SIZE, ErrorCode, Notification, Request, RpcError
from backupd.access import Level, Peer
from backupd.events import EventHub
from backupd.server import ConnectionLimits, Server, bind_unix_socket

TIMEOUT = 10.0
ADMIN = frozenset({Level.READ, Level.ADMIN})
READER = frozenset({Level.READ})


async def echo(request: Request, peer: Peer, subscribe: Callable[..., None]) -> Any:
    if request.method == "sleep":
        await trio.sleep(request.params["seconds"])
        return request.params["seconds"]
    if request.method == "fail":
        raise RpcError(ErrorCode.INVALID_PARAMS, "no such thing", {"param": "thing"})
    if request.method == "bug":
        raise ZeroDivisionError("a bug")
    if request.method == "subscribe":
        subscribe(lambda notification: notification)
        return {"subscribed": True}
    if request.method == "whoami":
        return {"uid": peer.uid, "pid": peer.pid}
    return {"method": request.method, "params": request.params}


@asynccontextmanager
async def serving(tmp_path: Path, levels: frozenset[Level] = ADMIN, limits: ConnectionLimits = ConnectionLimits(),
                  dispatch=echo, hub: EventHub | None = None) -> AsyncIterator[Path]:
    path = tmp_path / "backupd.sock"
    server = Server(bind_unix_socket(path), dispatch, hub or EventHub(), lambda peer: levels, limits)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield path
        nursery.cancel_scope.cancel()


def raw_call(path: Path, payload: bytes) -> list[Any]:
    """Send bytes as they are and read the first answer, as a client that is not backupctl would."""
    with stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(payload)
        unpacker = msgpack.Unpacker(raw=False)
        while data := sock.recv(65536):
            unpacker.feed(data)
            for message in unpacker:
                return message
    raise AssertionError("the server closed the connection without an answer")


async def test_an_answer_carries_the_request_and_the_peer(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path, AsyncClient.connect(path) as client:
            assert await client.call("hello", {"name": "box"}) == {"method": "hello", "params": {"name": "box"}}
            assert (await client.call("whoami"))["uid"] == os.getuid()


async def test_calls_on_one_connection_are_answered_as_they_finish_not_in_order(tmp_path):
    finished: list[float] = []
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path, AsyncClient.connect(path) as client:
            async def call(seconds: float) -> None:
                finished.append(await client.call("sleep", {"seconds": seconds}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, 0.5)
                await trio.sleep(0.05)
                nursery.start_soon(call, 0.0)
    assert finished == [0.0, 0.5]


async def test_a_typed_error_reaches_the_caller_whole_and_a_bug_becomes_internal(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path, AsyncClient.connect(path) as client:
            with pytest.raises(RpcError) as typed:
                await client.call("fail")
            assert (typed.value.code, typed.value.data) == (ErrorCode.INVALID_PARAMS, {"param": "thing"})
            with pytest.raises(RpcError) as bug:
                await client.call("bug")
            assert bug.value.code == ErrorCode.INTERNAL
            assert "a bug" not in str(bug.value)
            assert await client.call("still-here") == {"method": "still-here", "params": {}}


@pytest.mark.parametrize("payload", [
    msgpack.packb([0, 1, "no params list", "x"]),
    msgpack.packb([7, 1, "m", []]),
    msgpack.packb({"not": "an array"}),
    msgpack.packb([0, "one", "m", []]),
])
async def test_a_message_that_is_not_msgpack_rpc_is_answered_invalid_request(tmp_path, payload):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path:
            answer = await trio.to_thread.run_sync(raw_call, path, payload)
    assert answer[0] == 1
    assert answer[2]["code"] == ErrorCode.INVALID_REQUEST


async def test_bytes_that_are_not_msgpack_close_the_connection_after_saying_why(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path:
            answer = await trio.to_thread.run_sync(raw_call, path, b"\xc1" * 8)
    assert answer[1] is None
    assert answer[2]["code"] == ErrorCode.INVALID_REQUEST


async def test_a_message_over_the_size_limit_closes_only_its_connection(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path) as path, AsyncClient.connect(path) as bystander:
            with pytest.raises(DaemonUnreachable):
                async with AsyncClient.connect(path) as client:
                    await client.call("big", {"blob": b"x" * (MAX_MESSAGE_SIZE + 1)})
            assert await bystander.call("after") == {"method": "after", "params": {}}


async def test_a_peer_with_no_level_is_forbidden_and_told_so(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path, levels=frozenset()) as path, AsyncClient.connect(path) as client:
            with pytest.raises(RpcError) as refused:
                await client.call("status")
    assert refused.value.code == ErrorCode.FORBIDDEN


async def test_readers_past_the_limit_per_uid_are_told_busy_and_admins_still_get_in(tmp_path):
    limits = ConnectionLimits(readers=8, per_user=2)
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path, levels=READER, limits=limits) as path:
            async with AsyncClient.connect(path) as first, AsyncClient.connect(path) as second:
                assert await first.call("a") and await second.call("b")
                async with AsyncClient.connect(path) as third:
                    with pytest.raises(RpcError) as busy:
                        await third.call("c")
            assert busy.value.code == ErrorCode.BUSY
            assert busy.value.data["connections"] == 2
            async with AsyncClient.connect(path) as later:
                assert await later.call("d") == {"method": "d", "params": {}}


async def test_an_idle_connection_is_closed_but_not_one_waiting_for_an_answer(tmp_path):
    limits = ConnectionLimits(idle_timeout=0.3)
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path, limits=limits) as path:
            async with AsyncClient.connect(path) as waiting:
                assert await waiting.call("sleep", {"seconds": 1.0}) == 1.0
            async with AsyncClient.connect(path) as idle:
                await trio.sleep(0.8)
                with pytest.raises(DaemonUnreachable):
                    await idle.call("too late")


async def test_a_subscriber_gets_what_is_published_and_stays_open_while_idle(tmp_path):
    hub = EventHub()
    limits = ConnectionLimits(idle_timeout=0.3)
    with trio.fail_after(TIMEOUT):
        async with serving(tmp_path, limits=limits, hub=hub) as path, AsyncClient.connect(path) as client:
            assert await client.call("subscribe") == {"subscribed": True}
            await trio.sleep(0.6)
            hub.publish("job.progress", {"job": 7, "percent": 40})
            async for notification in client.events():
                assert notification == Notification("job.progress", {"job": 7, "percent": 40})
                break
