"""The client library against a real backupd on a real socket."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import msgpack

import pytest
import trio

from backupctl.async_client import AsyncClient
from backupctl.client import Client, DaemonUnreachable
from backupctl.protocol import API_VERSION, ErrorCode, Notification, RpcError
from tests.conftest import DaemonProcess
from tests.users import copy_client_packages

PROGRESS_KEYS = {"files", "original_size", "deduplicated_size", "path", "percent", "eta"}
JOB_KEYS = {"id", "kind", "trigger", "state", "started", "finished", "progress", "result", "error", "requested_by", "dry_run"}


def test_call_ping_and_status(daemon: DaemonProcess):
    with Client(daemon.socket) as client:
        assert client.call("ping")["api"] == API_VERSION
        overview = client.call("status")
    assert overview["state"] == "unconfigured"
    assert overview["snapshot_count"] == 0
    assert overview["job"] is None


def test_unknown_method_raises_method_not_found(daemon: DaemonProcess):
    with Client(daemon.socket) as client:
        with pytest.raises(RpcError) as error:
            client.call("format_disk")
        assert error.value.code == ErrorCode.METHOD_NOT_FOUND
        assert client.call("ping")["api"] == API_VERSION


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("jobs", {"limit": "ten"}, "limit"),
        ("jobs", {"limit": 0}, "limit"),
        ("ping", {"verbose": True}, "verbose"),
        ("cancel", {}, "job"),
        ("snapshot", {"wait": "yes"}, "wait"),
        ("configure", {"repository": "/srv/repo"}, "passphrase"),
    ],
)
def test_bad_params_raise_invalid_params_naming_the_param(daemon: DaemonProcess, method, params, param):
    with Client(daemon.socket) as client:
        with pytest.raises(RpcError) as error:
            client.call(method, params)
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert error.value.data["param"] == param


def test_blocking_client_receives_notifications_after_subscribe(configured_daemon: DaemonProcess):
    with Client(configured_daemon.socket, timeout=20.0) as client:
        assert client.call("subscribe") == {}
        job = client.call("snapshot")
        methods = []
        for notification in client.events():
            if notification.params.get("id") == job["id"]:
                methods.append(notification.method)
                if notification.method == "job.finished":
                    break
    assert methods[0] == "job.started"
    assert methods[-1] == "job.finished"


def test_missing_socket_is_daemon_unreachable(tmp_path: Path):
    missing = tmp_path / "missing.sock"
    with pytest.raises(DaemonUnreachable, match=str(missing)):
        Client(missing)


async def test_async_missing_socket_is_daemon_unreachable(tmp_path: Path):
    missing = tmp_path / "missing.sock"
    with pytest.raises(DaemonUnreachable, match=str(missing)):
        async with AsyncClient.connect(missing):
            pass


async def test_async_rpc_error_comes_out_of_the_connection_as_itself(daemon: DaemonProcess):
    with trio.fail_after(10):
        with pytest.raises(RpcError) as error:
            async with AsyncClient.connect(daemon.socket) as client:
                await client.call("no_such_method")
    assert error.value.code == ErrorCode.METHOD_NOT_FOUND


async def test_async_concurrent_calls_on_one_connection_answer_out_of_order(configured_daemon: DaemonProcess):
    finished: list[str] = []
    results: dict[str, object] = {}

    async def call(label: str, method: str, params: dict | None = None) -> None:
        results[label] = await client.call(method, params)
        finished.append(label)

    with trio.fail_after(20):
        async with AsyncClient.connect(configured_daemon.socket) as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "snapshot", "snapshot", {"wait": True})
                while (await client.call("status"))["state"] != "running":
                    await trio.sleep(0.01)
                for index in range(10):
                    nursery.start_soon(call, f"ping{index}", "ping")
                    nursery.start_soon(call, f"status{index}", "status")
                nursery.start_soon(call, "jobs", "jobs", {"limit": 1})

    assert finished[-1] == "snapshot"
    assert len(finished) == 22
    assert results["snapshot"]["state"] == "succeeded"
    assert all(results[f"ping{index}"]["api"] == API_VERSION for index in range(10))
    assert results["jobs"][0]["id"] == results["snapshot"]["id"]


async def test_async_events_follow_a_snapshot(configured_daemon: DaemonProcess):
    received: list[Notification] = []
    with trio.fail_after(20):
        async with AsyncClient.connect(configured_daemon.socket) as client:
            assert await client.call("subscribe") == {}
            job = await client.call("snapshot")
            assert job["state"] == "running"
            async for notification in client.events():
                received.append(notification)
                if notification.method == "job.finished" and notification.params["id"] == job["id"]:
                    break

    about_job = [event for event in received if event.params.get("id") == job["id"]]
    methods = [event.method for event in about_job]
    assert methods[0] == "job.started"
    assert "job.progress" in methods
    assert methods[-1] == "job.finished"
    assert all(set(event.params) == JOB_KEYS for event in about_job)
    for event in about_job:
        if event.method == "job.progress":
            assert PROGRESS_KEYS <= set(event.params["progress"])
    final = about_job[-1].params
    assert final["state"] == "succeeded"
    assert final["result"]["snapshot"]["files"] == 100
    assert any(event.method == "status.changed" and event.params["snapshot_count"] == 1 for event in received)


async def test_async_call_after_the_daemon_stopped_is_daemon_unreachable(daemon: DaemonProcess):
    with trio.fail_after(20):
        with pytest.raises(DaemonUnreachable):
            async with AsyncClient.connect(daemon.socket) as client:
                await client.call("ping")
                await trio.to_thread.run_sync(daemon.stop)
                await client.call("ping")


def test_the_blocking_client_and_the_cli_need_nothing_but_msgpack(configured_daemon: DaemonProcess):
    packages = copy_client_packages()
    try:
        script = ("import sys\n"
                  "from backupctl.client import Client\n"
                  "import backupctl.cli\n"
                  "assert 'trio' not in sys.modules and 'backupd' not in sys.modules, sorted(sys.modules)\n"
                  "print(Client(sys.argv[1]).call('status')['state'])\n")
        only_the_client = {"PYTHONPATH": str(packages), "PATH": os.environ["PATH"]}
        completed = subprocess.run([sys.executable, "-S", "-c", script, str(configured_daemon.socket)],
                                   env=only_the_client, capture_output=True, text=True, timeout=60, cwd=packages)
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.strip() == "idle"
        trio_import = subprocess.run([sys.executable, "-S", "-c", "import trio"], env=only_the_client,
                                     capture_output=True, timeout=60, cwd=packages)
        assert trio_import.returncode != 0
    finally:
        shutil.rmtree(packages, ignore_errors=True)


def test_an_unreadable_request_fails_the_call_that_follows_it(daemon: DaemonProcess):
    with Client(daemon.socket) as client:
        client._sock.sendall(msgpack.packb(["not", "a", "request"]))
        with pytest.raises(RpcError) as error:
            client.call("ping")
        assert error.value.code == ErrorCode.INVALID_REQUEST
        assert client.call("status")["state"] == "unconfigured"


@pytest.fixture
def full_queue(daemon: DaemonProcess):
    """The daemon stopped (SIGSTOP) with its queue of new connections full; it resumes after half a second."""
    os.kill(daemon.process.pid, signal.SIGSTOP)
    queued = []
    try:
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(daemon.socket))
            except BlockingIOError:
                sock.close()
                break
            queued.append(sock)
        for sock in queued:
            sock.close()
        resume = threading.Timer(0.5, os.kill, (daemon.process.pid, signal.SIGCONT))
        resume.start()
        yield daemon
        resume.join()
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)


def test_a_full_queue_of_new_connections_is_waited_out(full_queue: DaemonProcess):
    with Client(full_queue.socket, timeout=10) as client:
        assert client.call("ping")["api"] == API_VERSION


async def test_async_a_full_queue_of_new_connections_is_waited_out(full_queue: DaemonProcess):
    with trio.fail_after(10):
        async with AsyncClient.connect(full_queue.socket) as client:
            assert (await client.call("ping"))["api"] == API_VERSION
