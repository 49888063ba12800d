import os
import stat

import pytest

from backupd.store import Store, StoreError
from tests.users import NOBODY, folder_others_can_reach, run_as_user

PRECREATE_FOLDER = """
import os, sys
os.mkdir(sys.argv[1], 0o700)
os.chmod(sys.argv[1], 0o700)
"""


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_documents_are_private_and_round_trip(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    store.write("config", {"passphrase": "p", "n": 1})
    assert store.load("config") == {"passphrase": "p", "n": 1}
    assert mode(tmp_path / "state") == 0o700
    assert mode(tmp_path / "state" / "config.json") == 0o600
    assert store.load("missing") is None


def test_a_write_replaces_the_whole_document_and_leaves_no_temporary_file(tmp_path):
    store = Store(tmp_path)
    os.chmod(tmp_path, 0o700)
    store.open()
    store.write("state", {"a": 1})
    store.write("state", {"b": 2})
    assert store.load("state") == {"b": 2}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_refuses_a_folder_others_can_read(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with pytest.raises(StoreError, match="open to other users"):
        Store(folder).open()


def test_refuses_a_state_folder_another_user_created_before_the_daemon(tmp_path):
    with folder_others_can_reach() as shared:
        writable = shared / "var"
        writable.mkdir()
        writable.chmod(0o1777)
        folder = writable / "backupd"
        run_as_user(NOBODY, PRECREATE_FOLDER, str(folder))
        store = Store(folder)
        with pytest.raises(StoreError, match=f"refusing the state folder {folder}: .* belongs to nobody"):
            store.open()
        assert os.listdir(folder) == []


@pytest.mark.parametrize("mode", [0o770, 0o730, 0o1777], ids=oct)
def test_refuses_a_state_folder_others_can_write(tmp_path, mode):
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(StoreError, match=f"refusing the state folder {folder}: .*can be written by other users"):
        Store(folder).open()
    assert os.listdir(folder) == []


def test_open_removes_what_an_interrupted_write_left(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    store.write("state", {"a": 1})
    (tmp_path / "state" / ".state.json.0f3a9c2b7d1e4a56.tmp").write_text("{")
    store.open()
    assert os.listdir(tmp_path / "state") == ["state.json"] and store.load("state") == {"a": 1}


def test_refuses_a_readable_state_file(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    store.write("config", {})
    os.chmod(tmp_path / "state" / "config.json", 0o644)
    with pytest.raises(StoreError, match="config.json"):
        store.open()


def test_corrupt_document_is_a_store_error(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    (tmp_path / "state" / "state.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        store.load("state")


async def test_save_writes_off_the_event_loop(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    await store.save("jobs", [{"id": "1"}])
    assert store.load("jobs") == [{"id": "1"}]


def test_a_journal_keeps_each_change_until_the_document_is_written_whole(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    store.write("state", {"a": 1})
    store.append("state", {"set": {"a": 2}})
    store.append("state", {"set": {"b": 3}})
    assert store.load("state") == {"a": 1}
    assert store.load_journal("state") == [{"set": {"a": 2}}, {"set": {"b": 3}}]
    assert mode(tmp_path / "state" / "state.journal") == 0o600
    store.write("state", {"a": 2, "b": 3})
    assert store.load_journal("state") == [] and sorted(os.listdir(tmp_path / "state")) == ["state.json"]


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    store.append("jobs", {"put": {"id": "1"}})
    with open(tmp_path / "state" / "jobs.journal", "ab") as journal:
        journal.write(b'{"put":{"id":"2","sta')
    assert store.load_journal("jobs") == [{"put": {"id": "1"}}]
    store.append("jobs", {"put": {"id": "3"}})
    assert store.load_journal("jobs") == [{"put": {"id": "1"}}, {"put": {"id": "3"}}]


def test_a_damaged_line_before_others_makes_the_journal_unreadable(tmp_path):
    store = Store(tmp_path / "state")
    store.open()
    (tmp_path / "state" / "state.journal").write_bytes(b'{"set":{}}\n\x00\xff\n{"set":{}}\n')
    with pytest.raises(StoreError, match="line 2 is not JSON"):
        store.load_journal("state")
    aside = store.set_aside("state", 1700000000)
    assert sorted(os.listdir(tmp_path / "state")) == ["state.journal.unreadable-1700000000"]
    assert aside.name == "state.json.unreadable-1700000000"


def test_append_says_when_the_journal_has_outgrown_its_document(tmp_path, monkeypatch):
    monkeypatch.setattr("backupd.store.JOURNAL_FLOOR", 100)
    store = Store(tmp_path / "state")
    store.open()
    store.write("state", {"archives": ["x" * 40] * 5})
    outgrown = [store.append("state", {"set": {"n": n}}) for n in range(30)]
    assert outgrown.index(True) > 0 and all(outgrown[outgrown.index(True):])
    assert (tmp_path / "state" / "state.journal").stat().st_size > (tmp_path / "state" / "state.json").stat().st_size
