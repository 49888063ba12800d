"""Hostile input for fuzzing the daemon: random bytes, random msgpack values, valid frames with
random methods and params, and truncated frames."""

from __future__ import annotations

import os
import socket

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("BACKUPD_FUZZ_EXAMPLES", "150"))
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
methods = st.sampled_from(["ping", "status", "config", "configure", "snapshot", "snapshots", "jobs", "job",
                           "cancel", "subscribe", "restore", "reset", "export_key", "ssh_key", "check", ""]) \
    | st.text(max_size=12)
param_names = st.sampled_from(["wait", "limit", "job", "id", "repository", "passphrase", "sources", "snapshot",
                               "paths", "dry_run", "x"])

valid_frames = st.tuples(methods, st.dictionaries(st.text(max_size=8), msgpack_values, max_size=3)).map(
    lambda t: msgpack.packb([0, 79, t[0], [t[1]]], use_bin_type=True))
truncated_frames = st.tuples(valid_frames, st.integers(min_value=1)).map(lambda t: t[0][: t[1] % len(t[0])])

hostile_frames = st.one_of(
    truncated_frames,
    st.binary(max_size=64),
    msgpack_values.map(lambda value: msgpack.packb(value, use_bin_type=True)),
    st.tuples(methods, st.lists(msgpack_values, max_size=2)).map(
        lambda t: msgpack.packb([0, 77, t[0], t[1]], use_bin_type=True)),
    st.tuples(methods, st.dictionaries(param_names, msgpack_values, max_size=3)).map(
        lambda t: msgpack.packb([0, 77, t[0], [t[1]]], use_bin_type=True)),
)

FOLLOW_UP_ID = 78
FOLLOW_UP = msgpack.packb([0, FOLLOW_UP_ID, "ping", []])


def answers_to(sock: socket.socket, frame: bytes) -> list:
    """Send frame then a ping, close the sending side, and read every answer until the daemon closes."""
    with sock:
        sock.settimeout(10.0)
        sock.sendall(frame + FOLLOW_UP)
        sock.shutdown(socket.SHUT_WR)
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while data := sock.recv(65536):
            unpacker.feed(data)
        answers = list(unpacker)
    for answer in answers:
        assert answer[0] == 1
        if answer[2] is not None:
            assert isinstance(answer[2]["code"], str) and answer[2]["code"] != "internal"
    return answers
