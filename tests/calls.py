"""Helpers of the tests that talk to a daemon process: an error a call raises, a condition
waited for, a long snapshot started."""

import time
from pathlib import Path

import pytest

from backupctl.client import Client
from backupctl.protocol import RpcError
from tests.conftest import PASSPHRASE, DaemonProcess


def call_error(client: Client, method: str, params: dict | None = None) -> RpcError:
    with pytest.raises(RpcError) as raised:
        client.call(method, params)
    return raised.value


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def start_large_snapshot(daemon: DaemonProcess, repository: Path, large_data: Path) -> tuple[Client, dict]:
    client = daemon.client()
    client.call("configure", {"repository": str(repository), "passphrase": PASSPHRASE,
                              "sources": [str(large_data)]})
    client.call("subscribe")
    return client, client.call("snapshot")
