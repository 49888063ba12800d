"""Names that are not UTF-8: the wire scheme, JSON, text for people, and each part that carries them."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import msgpack
import pytest
import trio

from backupctl.async_client import AsyncClient
from backupctl.render.text import to_json
from backupctl.render.progress import progress_line
from backupctl.paths import for_json, from_wire, printable, to_wire
from backupctl.protocol import Request, Response, RpcError, pack, parse
from backupd.access import Level
from backupd.borg import commands
from backupd.borg.tree_listing import TreeParser
from backupd.borg.log_json import LogMessage
from backupd.borg.runner import run_borg
from backupd.events import EventHub
from backupd.jobs import Job, JobRunner
from backupd.params import Param, PathName, check_params
from backupd.server import Server, bind_unix_socket
from backupd.service import Service
from backupd.settings import Settings
from backupd.store import Store
from tests import test_job_log

EVERY_BYTE = bytes(range(1, 256)).replace(b"/", b"")
NAMES = [b"caf\xe9.txt", b"d\xffir/inn\xfer", b"\xc3\xa9t\xc3\xa9", EVERY_BYTE, b"half \xc3", b"a\nb\\xff"]


@pytest.mark.parametrize("name", NAMES)
def test_a_name_survives_the_wire_and_json_exactly(name: bytes):
    held = os.fsdecode(name)
    wire = msgpack.unpackb(pack(Response(1, None, {"targets": [held]})), raw=False)
    sent = wire[3]["targets"][0]
    assert isinstance(sent, str if name == held.encode("utf-8", "surrogateescape") and
                      not any(0xDC80 <= ord(c) <= 0xDCFF for c in held) else bytes)
    assert os.fsencode(from_wire(sent)) == name
    assert os.fsencode(json.loads(to_json({"path": sent}))["path"]) == name
    assert os.fsencode(json.loads(json.dumps(held))) == name


def test_utf8_names_stay_strings_and_others_become_bin():
    assert to_wire(["/srv/été", "/srv/caf\udce9"]) == ["/srv/été", b"/srv/caf\xe9"]
    assert msgpack.unpackb(pack(Request(1, "restore", {"paths": ["/srv/caf\udce9"]})))[3] == [
        {"paths": [b"/srv/caf\xe9"]}]


def test_text_for_people_shows_bytes_that_are_not_utf8_and_never_fails():
    assert printable("/srv/caf\udce9") == printable(b"/srv/caf\xe9") == "/srv/caf\\xe9"
    assert printable("été") == "été"
    assert printable("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert RpcError("not_found", "missing /srv/caf\udce9").message == "missing /srv/caf\\xe9"
    assert progress_line({"files": 3, "path": b"/srv/caf\xe9"}).endswith("/srv/caf\\xe9")
    json.dumps(for_json({b"k\xff": [b"\xfe"]}))


def test_json_for_people_escapes_each_byte_as_a_surrogate():
    text = to_json({"targets": [b"/srv/caf\xe9"], "name": "été"})
    assert "\\udce9" in text and "été" in text
    text.encode("utf-8")


def test_path_params_take_strings_and_bin_and_refuse_anything_else():
    declared = (Param("paths", list, item_kind=PathName),)
    assert check_params({"paths": ["/a", b"/caf\xe9"]}, declared)
    for bad in ([7], [None], [["/a"]], [b"/" + b"x" * 5000]):
        with pytest.raises(RpcError) as raised:
            check_params({"paths": bad}, declared)
        assert raised.value.code == "invalid_params" and raised.value.data["param"] == "paths"


def test_the_saved_history_keeps_names_exactly(tmp_path: Path):
    store = Store(tmp_path / "state")
    store.open()
    held = os.fsdecode(b"/srv/caf\xe9")
    store.write("jobs", [{"result": {"targets": [held]}}])
    assert (tmp_path / "state" / "jobs.json").read_bytes().isascii()
    assert store.load("jobs") == [{"result": {"targets": [held]}}]


daemon_logging = test_job_log.daemon_logging


@pytest.mark.usefixtures("daemon_logging")
async def test_a_job_log_shows_such_bytes_escaped():
    async with trio.open_nursery() as nursery:
        runner = JobRunner(EventHub(), [], test_job_log.saved)
        await nursery.start(runner.run)

        async def work(job: Job, report) -> dict:
            logging.getLogger("backupd.test_paths").warning("restoring %s", "/srv/caf\udce9")
            return {}

        job = runner.start("restore", "manual", work)
        await runner.wait(job)
        nursery.cancel_scope.cancel()
    assert any(line.message == "restoring /srv/caf\\xe9" for line in job.log)
    assert msgpack.unpackb(pack(Response(1, None, job.to_full_record())), raw=False)[3]["state"] == "succeeded"


async def test_borg_words_naming_such_a_file_become_text(tmp_path: Path):
    borg = (sys.executable, "-m", "borg")
    env = {"BORG_BASE_DIR": str(tmp_path / "base")}
    repository = str(tmp_path / "repo")
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"x")
    await run_borg(commands.init(repository, "none"), borg=borg, env=env)
    await run_borg(commands.create(repository, "a", [str(source)]), borg=borg, env=env)
    events: list = []
    (tmp_path / "out").mkdir()
    missing = source.relative_to("/") / os.fsdecode(b"caf\xe9")
    result = await run_borg(commands.extract(repository, "a", [str(missing)]), borg=borg, env=env,
                            cwd=str(tmp_path / "out"), on_event=events.append)
    warnings = [event.message for event in events if isinstance(event, LogMessage) and event.levelname == "WARNING"]
    assert any("caf\\xe9" in warning for warning in warnings), warnings
    assert all(message.message.isprintable() for message in result.log)


async def test_borg_lists_such_names_exactly(tmp_path: Path):
    borg = (sys.executable, "-m", "borg")
    env = {"BORG_BASE_DIR": str(tmp_path / "base")}
    repository = str(tmp_path / "repo")
    source = os.fsencode(tmp_path / "source")
    os.makedirs(os.path.join(source, b"d\xffir"))
    for name in (b"d\xffir/caf\xe9", b"new\nline+\\x", b"\xc3\xa9t\xc3\xa9"):
        with open(os.path.join(source, name), "wb") as file:
            file.write(b"12345")
    await run_borg(commands.init(repository, "none"), borg=borg, env=env)
    await run_borg(commands.create(repository, "a", [os.fsdecode(source)]), borg=borg, env=env)
    parser, listed = TreeParser(), []

    async def read(chunk: bytes) -> None:
        listed.extend(parser.feed(chunk))

    await run_borg(commands.list_tree(repository, "a"), borg=borg, env=env, on_stdout=read)
    listed.extend(parser.finish())
    items = {os.fsencode("/" + item.path): item for item in listed}
    for name in (b"d\xffir/caf\xe9", b"new\nline+\\x", b"\xc3\xa9t\xc3\xa9"):
        item = items[os.path.join(source, name)]
        assert item.kind == "file" and item.size == 5 and item.mtime
    assert items[os.path.join(source, b"d\xffir")].kind == "folder"


async def test_a_result_msgpack_cannot_pack_goes_out_as_text_and_later_calls_still_work(tmp_path: Path):
    answers = iter([{"odd": {1, 2}}, {"fine": "/srv/caf\udce9"}])

    async def dispatch(request, peer, subscribe):
        return next(answers)

    listener = bind_unix_socket(tmp_path / "s.sock")
    server = Server(listener, dispatch, EventHub(), lambda peer: frozenset({Level.ADMIN}))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            async with AsyncClient.connect(tmp_path / "s.sock") as client:
                assert await client.call("jobs") == {"odd": "{1, 2}"}
                assert await client.call("jobs") == {"fine": b"/srv/caf\xe9"}
            nursery.cancel_scope.cancel()


def test_parse_keeps_bin_params_as_bytes():
    message = parse(msgpack.unpackb(pack(Request(3, "restore", {"paths": ["/caf\udce9"]})), raw=False))
    assert message.params == {"paths": [b"/caf\xe9"]}


def test_a_problem_naming_such_a_file_shows_it_escaped(tmp_path: Path):
    store = Store(tmp_path / "state")
    store.open()
    service = Service(Settings(state_dir=tmp_path / "state", borg_base_dir=tmp_path / "base"), store)
    problem = service.keeper.problem_from("restore_incomplete", "something took the place of /srv/caf\udce9", "restore")
    assert problem.message == "something took the place of /srv/caf\\xe9"
