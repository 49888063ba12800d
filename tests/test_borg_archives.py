from datetime import datetime

from backupd.borg.archives import (
    BorgArchive,
    archives_in,
    checkpoint_of,
    checkpoints_glob,
    created_archive,
    encryption_mode,
    info_archive,
    is_checkpoint,
    listed_archives,
    stored_size,
)

START = "2026-11-28T06:30:00.000000"
STATS = {"nfiles": 3, "original_size": 300, "compressed_size": 200, "deduplicated_size": 100}


def test_archives_of_list_info_and_create_json() -> None:
    listing = {"archives": [
        {"name": "box-2026-11-28T06:30:00Z", "id": "ab" * 32, "start": START, "time": START, "archive": "x"},
        {"name": "box-2026-11-28T06:30:00Z.checkpoint", "id": "cd" * 32, "start": START, "time": START},
    ]}
    first, checkpoint = listed_archives(listing)
    assert first == BorgArchive("box-2026-11-28T06:30:00Z", "ab" * 32, datetime.fromisoformat(START).timestamp())
    assert checkpoint.is_checkpoint and not first.is_checkpoint

    info = {"archives": [{"name": "a", "id": "ef", "start": START, "duration": 1.5, "stats": STATS,
                          "command_line": ["borg", "create", "--exclude=*.tmp"], "cwd": "/"}],
            "cache": {"stats": {"unique_csize": 4096}}, "encryption": {"mode": "repokey-blake2"}}
    archive = info_archive(info)
    assert (archive.files, archive.original_size, archive.deduplicated_size, archive.duration) == (3, 300, 100, 1.5)
    assert archive.command_line == ("borg", "create", "--exclude=*.tmp") and archive.cwd == "/"
    assert stored_size(info) == 4096 and encryption_mode(info) == "repokey-blake2"

    created = created_archive({"archive": {"name": "b", "id": "01", "start": START, "stats": STATS}, "cache": {}})
    assert (created.name, created.files) == ("b", 3)


def test_what_borg_did_not_say_is_empty() -> None:
    for nothing in (None, {}, {"archives": None}, [], "text"):
        assert archives_in(nothing) == [] and listed_archives(nothing) == []
        assert info_archive(nothing) == BorgArchive("")
        assert created_archive(nothing) == BorgArchive("")
        assert stored_size(nothing) == 0
        assert encryption_mode(nothing) is None
    assert archives_in({"archives": [{"name": "x", "start": "not a time"}]})[0].time == 0.0


def test_checkpoint_names() -> None:
    assert checkpoint_of("box-1.checkpoint") == "box-1"
    assert checkpoint_of("box-1.checkpoint.2") == "box-1"
    assert checkpoint_of("box-1") is None and checkpoint_of("box-1.checkpoint.x") is None
    assert is_checkpoint("a.checkpoint.10") and not is_checkpoint("a.checkpointed")
    assert checkpoints_glob("box-[0-9]") == "box-[0-9].checkpoint*"
