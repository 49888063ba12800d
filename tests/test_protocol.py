import msgpack
import pytest

from backupctl.protocol import (
    ErrorCode,
    Notification,
    ProtocolError,
    Request,
    Response,
    RpcError,
    new_unpacker,
    pack,
    parse,
)


def test_request_round_trip_with_named_options():
    wire = pack(Request(7, "snapshot", {"wait": True}))
    assert msgpack.unpackb(wire) == [0, 7, "snapshot", [{"wait": True}]]
    assert parse(msgpack.unpackb(wire)) == Request(7, "snapshot", {"wait": True})


def test_request_without_options_sends_empty_params():
    assert msgpack.unpackb(pack(Request(1, "status"))) == [0, 1, "status", []]


def test_response_carries_error_map():
    error = RpcError(ErrorCode.BUSY, "Another operation is running", {"job": {"id": "3"}})
    wire = msgpack.unpackb(pack(Response(4, error, None)))
    assert wire == [1, 4, {"code": "busy", "message": "Another operation is running", "data": {"job": {"id": "3"}}}, None]
    parsed = parse(wire)
    assert isinstance(parsed, Response) and parsed.error.code == "busy" and parsed.error.data["job"]["id"] == "3"


def test_an_error_answering_an_unreadable_request_has_a_nil_msgid():
    parsed = parse([1, None, {"code": "invalid_request", "message": "not a msgpack-rpc message"}, None])
    assert parsed == Response(None, parsed.error, None) and parsed.error.code == "invalid_request"
    with pytest.raises(ProtocolError):
        parse([1, None, None, {"state": "idle"}])


def test_notification_round_trip():
    wire = msgpack.unpackb(pack(Notification("job.progress", {"id": "1"})))
    assert wire == [2, "job.progress", [{"id": "1"}]]
    assert parse(wire) == Notification("job.progress", {"id": "1"})


def test_method_name_may_be_bin():
    assert parse([0, 1, b"status", []]) == Request(1, "status", {})


@pytest.mark.parametrize(
    "value, msgid",
    [
        ({"not": "an array"}, None),
        ([], None),
        ([0, 1, "status"], 1),
        ([0, -1, "status", []], None),
        ([0, 2**32, "status", []], None),
        ([0, 1.5, "status", []], None),
        ([0, 3, 42, []], 3),
        ([0, 4, "status", "params"], 4),
        ([0, 5, "status", [1, 2]], 5),
        ([3, 6, "status", []], 6),
        ([True, 7, "status", []], 7),
        ([0, 8, b"\xff", []], 8),
    ],
)
def test_malformed_messages_raise_with_the_msgid_when_known(value, msgid):
    with pytest.raises(ProtocolError) as raised:
        parse(value)
    assert raised.value.msgid == msgid


def test_unpacker_refuses_a_message_over_one_mebibyte():
    unpacker = new_unpacker()
    with pytest.raises(msgpack.BufferFull):
        unpacker.feed(msgpack.packb([0, 1, "status", ["x" * (1024 * 1024)]]))


def test_unpacker_reads_back_to_back_messages():
    unpacker = new_unpacker()
    unpacker.feed(pack(Request(1, "ping")) + pack(Request(2, "status")))
    assert [parse(value).msgid for value in unpacker] == [1, 2]
