"""Which files of a bucket's listing make up one committed state of a borg repository, and what
a borg index's header and config say: as data, no bucket."""

from __future__ import annotations

import json

import pytest

from backupd.borg.transactions import index_entry_count, is_repository_config
from backupd.mirror import rclone
from backupd.mirror.repository_copy import (
    BucketFile,
    ListingUnreadable,
    folders_with,
    parse_listing,
    repository_copy,
)


def listing(*paths: str) -> tuple[BucketFile, ...]:
    return tuple(BucketFile(path, len(path)) for path in paths)


def test_the_newest_index_with_its_hints_and_the_segments_up_to_it_and_no_lock_or_marker() -> None:
    copy = repository_copy(listing(
        "README", "config", "nonce", "index.5", "hints.5", "integrity.5", "index.9", "hints.9", "integrity.9",
        "data/0/1", "data/0/9", "data/0/10", "data/1/1000", "lock.roster", "lock.exclusive/box.1-2",
        ".backupd-write-check", "data/0/.backupd-x", "notes.txt",
    ))
    assert copy.transaction == 9 and copy.index == "index.9" and copy.has_config
    assert [file.path for file in copy.metadata] == ["README", "config", "hints.9", "index.9", "integrity.9", "nonce"]
    assert [file.path for file in copy.segments] == ["data/0/1", "data/0/9"]
    assert copy.paths() == {file.path for file in (*copy.metadata, *copy.segments)}


def test_without_an_index_every_segment_is_taken_and_an_empty_prefix_is_no_repository() -> None:
    copy = repository_copy(listing("config", "data/0/1", "data/0/7"))
    assert copy.transaction is None and copy.index is None
    assert [file.path for file in copy.segments] == ["data/0/1", "data/0/7"]
    assert not repository_copy(()).has_config


def test_a_changed_size_or_a_new_index_is_another_state() -> None:
    first = repository_copy(listing("config", "index.3", "data/0/3"))
    assert repository_copy(listing("config", "index.3", "data/0/3")) == first
    assert repository_copy((*listing("config", "index.3"), BucketFile("data/0/3", 1))) != first
    assert repository_copy(listing("config", "index.3", "index.4", "data/0/3", "data/0/4")) != first


def test_rclone_listings_are_read_and_a_broken_one_is_an_error() -> None:
    text = json.dumps([{"Path": "data/0/1", "Name": "1", "Size": 17, "IsDir": False},
                       {"Path": "data", "Name": "data", "Size": -1, "IsDir": True}])
    assert parse_listing(text) == (BucketFile("data/0/1", 17),)
    assert parse_listing("[\n]\n") == ()
    for broken in ("", "{}", '[{"Path": "x"}]', "[1]"):
        with pytest.raises(ListingUnreadable):
            parse_listing(broken)
    assert folders_with(listing("b/config", "a/repo/config", "config.txt", "c/configs"), "config") == ["a/repo", "b"]


@pytest.mark.parametrize(("start", "count"), [
    ("BORG_IDX\x01\x00\x00\x00", 1),
    ("BORG_IDX\x05\x00\x00\x00", 5),
    ("BORG_IDX\x00\x01\x00\x00", 256),
    ("BORG_IDX\ufffd\x00\x00\x00", None),  # a byte past ASCII, lost in the text
    ("BORG_IDX\x01", None),
    ("BORG2IDX\x01\x00\x00\x00", None),
])
def test_the_index_header_gives_its_entry_count_when_it_can_be_read_back(start: str, count: int | None) -> None:
    assert index_entry_count(start) == count


def test_a_borg_config_has_a_repository_section() -> None:
    assert is_repository_config("[repository]\nversion = 1\nid = ab12\n")
    assert not is_repository_config("not a borg repository\n")
    assert not is_repository_config("[remote]\ntype = s3\n")


def test_downloads_compare_segments_by_size_and_the_rest_by_hash_from_a_list_and_reads_are_bounded() -> None:
    segments = rclone.download_listed("mirror:b/p", "/srv/.repo.download", "/state/.download-1.list", False)
    assert segments.args == ("copy", "mirror:b/p", "/srv/.repo.download", "--files-from-raw=/state/.download-1.list",
                             "--size-only")
    assert not segments.uploads and segments.capabilities == rclone.REPOSITORY_ACCESS
    assert "--checksum" in rclone.download_listed("mirror:b/p", "/x", "/l", True).args
    assert "--max-depth=3" in rclone.find_files_named("mirror:b", "config", 3).args
    assert rclone.read_start("mirror:b/p/index.9", 12).args == ("cat", "--count=12", "mirror:b/p/index.9")
    assert rclone.list_files("mirror:b/p").args[0] == "lsjson"
