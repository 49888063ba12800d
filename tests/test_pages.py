"""snapshots and jobs in pages: each answer inside the message limit, every record once."""

from __future__ import annotations


import msgpack
import pytest

from backupctl.protocol import MAX_MESSAGE_SIZE, RpcError
from backupd.pages import all_snapshots, snapshot_page
from backupd.state import ArchiveEntry, RepositoryState
from tests.conftest import DaemonProcess
from tests.test_browse import take_snapshot

ARCHIVES = 10_000


def many_archives() -> RepositoryState:
    start = 1_700_000_000.0
    return RepositoryState(archives=tuple(
        ArchiveEntry(name=f"edgebox-{index:05d}-" + "x" * 80, id=f"{index:064x}", time=start + index * 3600,
                     sources=("/srv",), exclude=(), files=10, original_size=100)
        for index in range(ARCHIVES)))


def test_ten_thousand_snapshots_come_in_pages_newest_first_each_within_the_limit() -> None:
    state = many_archives()
    with pytest.raises(RpcError) as refused:
        all_snapshots(state.archives)
    assert refused.value.data == {"param": "cursor"}
    seen: list[str] = []
    cursor = ""
    while True:
        page = snapshot_page(state.archives, 1000, cursor).to_record()
        assert len(msgpack.packb(page)) < MAX_MESSAGE_SIZE and page["total"] == ARCHIVES
        seen += [record["name"] for record in page["snapshots"]]
        if page["cursor"] is None:
            break
        cursor = page["cursor"]
    assert seen == [archive.name for archive in reversed(state.archives)]


def test_a_bad_cursor_or_limit_is_refused_by_name() -> None:
    state = many_archives()
    for limit, cursor, param in ((0, "", "limit"), (1001, "", "limit"), (10, "not a cursor", "cursor")):
        with pytest.raises(RpcError) as refused:
            snapshot_page(state.archives, limit, cursor)
        assert refused.value.data == {"param": param}


def test_the_daemon_pages_snapshots_and_jobs_and_keeps_the_unpaged_lists(configured_daemon: DaemonProcess) -> None:
    names = [take_snapshot(configured_daemon) for _ in range(3)]
    with configured_daemon.client() as client:
        assert [entry["name"] for entry in client.call("snapshots")] == names[::-1]
        first = client.call("snapshots", {"limit": 2})
        assert [entry["name"] for entry in first["snapshots"]] == names[:0:-1] and first["total"] == 3
        last = client.call("snapshots", {"limit": 2, "cursor": first["cursor"]})
        assert [entry["name"] for entry in last["snapshots"]] == names[:1] and last["cursor"] is None
        assert [entry["name"] for entry in client.paged("snapshots", "snapshots", {"limit": 1})] == names[::-1]
        jobs = client.call("jobs", {"limit": 2, "cursor": ""})
        assert len(jobs["jobs"]) == 2 and jobs["cursor"] == jobs["jobs"][-1]["id"]
        everything = list(client.paged("jobs", "jobs", {"limit": 2}))
        assert [record["id"] for record in everything] == [record["id"] for record in client.call("jobs", {"limit": 200})]
        with pytest.raises(RpcError) as refused:
            client.call("jobs", {"cursor": "no such job"})
        assert refused.value.code == "invalid_params" and refused.value.data == {"param": "cursor"}
