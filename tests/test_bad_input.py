"""Hostile and broken clients against a real daemon: each gets an error or a closed
connection, and everyone else is still served."""

import socket
import threading
import time

import msgpack
import pytest
from hypothesis import given

from backupctl.client import Client
from backupctl.protocol import MAX_MESSAGE_SIZE
from tests.frames import FUZZ_EXAMPLES, answers_to, fuzz_settings, hostile_frames
from tests.processes import resident_bytes

TIMEOUT = 10.0


def raw_connection(daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(daemon.socket))
    return sock


def read_messages(sock: socket.socket, count: int) -> list:
    unpacker = msgpack.Unpacker(raw=False)
    messages: list = []
    while len(messages) < count:
        data = sock.recv(65536)
        if not data:
            break
        unpacker.feed(data)
        messages.extend(unpacker)
    return messages


def exchange(daemon, payload: bytes, count: int = 1) -> list:
    with raw_connection(daemon) as sock:
        sock.sendall(payload)
        return read_messages(sock, count)


def assert_still_serving(daemon) -> None:
    with Client(daemon.socket, timeout=TIMEOUT) as client:
        assert client.call("ping")["api"] == 1


def test_unknown_method(daemon):
    [response] = exchange(daemon, msgpack.packb([0, 1, "format_disk", []]))
    assert response[:2] == [1, 1] and response[2]["code"] == "method_not_found" and response[3] is None


def test_method_name_as_bin_and_params_as_a_map_in_an_array(daemon):
    [response] = exchange(daemon, msgpack.packb([0, 9, b"jobs", [{"limit": 1}]], use_bin_type=True))
    assert response == [1, 9, None, []]


@pytest.mark.parametrize(
    "params, param",
    [
        ([{"limit": "ten"}], "limit"),
        ([{"limit": True}], "limit"),
        ([{"limit": 0}], "limit"),
        ([{"colour": 1}], "colour"),
        ([{1: 2}], "1"),
    ],
)
def test_wrong_or_unknown_params(daemon, params, param):
    [response] = exchange(daemon, msgpack.packb([0, 2, "jobs", params]))
    assert response[2]["code"] == "invalid_params" and response[2]["data"]["param"] == param


@pytest.mark.parametrize(
    "message",
    [[0, 3, "ping"], [7, 3, "ping", []], {"method": "ping"}, "ping", [0, 3, 12, []], [0, 3, "ping", "x"]],
)
def test_wrong_message_shapes_get_invalid_request(daemon, message):
    [response] = exchange(daemon, msgpack.packb(message))
    assert response[0] == 1 and response[2]["code"] == "invalid_request"


def test_malformed_msgpack_closes_only_that_connection(daemon):
    with raw_connection(daemon) as sock:
        sock.sendall(b"\xc1\xc1\xc1 definitely not msgpack")
        messages = read_messages(sock, 2)
        assert messages[0][2]["code"] == "invalid_request"
        assert sock.recv(1) == b""
    assert_still_serving(daemon)


def test_client_notifications_and_responses_are_ignored(daemon):
    payload = msgpack.packb([2, "hello", []]) + msgpack.packb([1, 5, None, "x"]) + msgpack.packb([0, 6, "ping", []])
    [response] = exchange(daemon, payload)
    assert response[1] == 6 and response[3]["api"] == 1


def test_responses_may_come_out_of_order(configured_daemon):
    payload = msgpack.packb([0, 1, "snapshot", [{"wait": True}]]) + msgpack.packb([0, 2, "status", []])
    responses = exchange(configured_daemon, payload, count=2)
    assert [response[1] for response in responses] == [2, 1]
    assert responses[1][3]["state"] == "succeeded"


def test_a_message_over_one_mebibyte_closes_the_connection(daemon):
    with raw_connection(daemon) as sock:
        try:
            sock.sendall(msgpack.packb([0, 1, "ping", [{"x": "y" * (MAX_MESSAGE_SIZE + 10)}]]))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass
    assert_still_serving(daemon)


def test_a_client_that_vanishes_mid_request(daemon):
    for cut in (1, 5, 11):
        with raw_connection(daemon) as sock:
            sock.sendall(msgpack.packb([0, 1, "status", []])[:cut])
    with raw_connection(daemon) as sock:
        sock.sendall(msgpack.packb([0, 1, "snapshot", [{"wait": True}]]))
    assert_still_serving(daemon)


def test_a_hundred_clients_of_root_at_once_are_all_served(daemon):
    results: list = []
    barrier = threading.Barrier(100)

    def one_client():
        try:
            with raw_connection(daemon) as sock:
                barrier.wait()
                sock.sendall(msgpack.packb([0, 1, "status", []]))
                reply = read_messages(sock, 1)
                results.append(reply[0] if reply else "closed")
        except OSError as error:
            results.append(error)

    threads = [threading.Thread(target=one_client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert len(results) == 100
    assert all(isinstance(r, list) and r[2] is None and r[3]["state"] == "unconfigured" for r in results), results
    assert_still_serving(daemon)


MEMORY_BOUND = 150 * 1024 * 1024
PEAK_RESIDENT = [0]


@pytest.fixture(scope="module", autouse=True)
def report_peak_memory():
    yield
    if PEAK_RESIDENT[0]:
        print(f"\nfuzzing: {FUZZ_EXAMPLES} examples, daemon peak RSS {PEAK_RESIDENT[0] / 2**20:.1f} MiB")


@fuzz_settings
@given(frame=hostile_frames)
def test_random_frames_never_take_the_daemon_down(daemon, frame):
    answers_to(raw_connection(daemon), frame)
    assert daemon.process.poll() is None
    resident = resident_bytes(daemon.process.pid)
    PEAK_RESIDENT[0] = max(PEAK_RESIDENT[0], resident)
    assert resident < MEMORY_BOUND
    assert_still_serving(daemon)


def test_a_subscriber_that_leaves_with_unread_notifications(daemon):
    for _ in range(3):
        with raw_connection(daemon) as sock:
            sock.sendall(msgpack.packb([0, 1, "subscribe", []]))
            read_messages(sock, 1)
            with Client(daemon.socket, timeout=TIMEOUT) as other:
                other.call("reset")
            time.sleep(0.2)
        time.sleep(0.2)
        assert_still_serving(daemon)
