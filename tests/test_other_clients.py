"""Another msgpack-rpc implementation against a real daemon: pynvim's session, as DESIGN names it."""

from __future__ import annotations

import pytest
from pynvim.msgpack_rpc import socket_session

from tests.conftest import DaemonProcess


class DaemonError(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(error["message"])
        self.code = error["code"]


@pytest.fixture
def session(configured_daemon: DaemonProcess):
    session = socket_session(str(configured_daemon.socket))
    # pynvim's default reads an error as nvim's [type, message] pair; backupd's is a map.
    session.error_wrapper = DaemonError
    yield session
    session.close()


def test_requests_answers_and_errors(session):
    assert session.request("ping")["api"] == 1
    assert session.request("status")["state"] == "idle"
    assert session.request("jobs", {"limit": 1})[0]["kind"] == "configure"
    with pytest.raises(DaemonError) as raised:
        session.request("format_disk")
    assert raised.value.code == "method_not_found"
    with pytest.raises(DaemonError) as raised:
        session.request("jobs", {"limit": "ten"})
    assert raised.value.code == "invalid_params"
    assert session.request("ping")["api"] == 1


def test_a_snapshot_with_its_notifications(session):
    assert session.request("subscribe") == {}
    job = session.request("snapshot")
    seen = []
    while True:
        kind, method, params = session.next_message()
        assert kind == "notification"
        seen.append(method)
        if method == "job.finished" and params[0]["id"] == job["id"]:
            break
    assert params[0]["state"] == "succeeded"
    assert "status.changed" in seen
    assert session.request("status")["snapshot_count"] == 1


def test_a_notification_from_the_client_gets_no_answer_and_changes_nothing(session):
    session.request("snapshot", {}, async_=True)
    assert session.request("ping")["api"] == 1
    assert session.request("status")["snapshot_count"] == 0 and session.request("status")["job"] is None
