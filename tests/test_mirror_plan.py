"""The mirror's upload plan as data: what goes up and what is removed, in which order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from borg.repository import LoggedIO

from backupd.borg.transactions import COMMIT_TAG, RepositoryFiles, SegmentFile, read_repository_files
from backupd.mirror.plan import BucketAhead, RemoteFiles, leftovers_to_verify, plan_upload

ROOT = ("README", "config", "nonce")


def segment(number: int, size: int = 100, committed: bool = False) -> SegmentFile:
    return SegmentFile(number, f"data/0/{number}", size, 0.0, committed)


def local(transaction: int, *segments: SegmentFile) -> RepositoryFiles:
    root = (*ROOT, f"hints.{transaction}", f"index.{transaction}", f"integrity.{transaction}")
    return RepositoryFiles(transaction, root, {item.number: item for item in segments})


def bucket(transaction: int | None, segments: dict[int, int], root: tuple[str, ...] = ROOT) -> RemoteFiles:
    sizes = {name: 10 for name in root}
    if transaction is not None:
        sizes.update({f"index.{transaction}": 10, f"hints.{transaction}": 10, f"integrity.{transaction}": 10})
    sizes.update({f"data/0/{number}": size for number, size in segments.items()})
    return RemoteFiles(sizes)


def test_the_commit_tag_is_borgs() -> None:
    assert COMMIT_TAG == LoggedIO.COMMIT


def test_segments_that_end_a_transaction_go_one_at_a_time_lowest_first_after_the_others() -> None:
    repository = local(9, segment(1, committed=True), segment(5), segment(6, committed=True), segment(7),
                       segment(8), segment(9, committed=True))
    plan = plan_upload(repository, bucket(1, {1: 100}))
    assert plan.removed_first == ()
    assert plan.parallel == ("data/0/5", "data/0/7", "data/0/8")
    assert plan.in_order == ("data/0/6", "data/0/9")
    assert plan.removed_after == ()


def test_nothing_past_the_local_index_goes_up() -> None:
    repository = local(2, segment(1), segment(2, committed=True), segment(3), segment(4, committed=True))
    plan = plan_upload(repository, bucket(None, {}, root=()))
    assert "data/0/3" not in plan.parallel + plan.in_order and "data/0/4" not in plan.parallel + plan.in_order


def test_before_the_bucket_is_a_repository_everything_goes_up_at_once_and_config_waits_for_the_index() -> None:
    repository = local(3, segment(1, committed=True), segment(2), segment(3, committed=True))
    plan = plan_upload(repository, bucket(None, {}, root=()))
    assert plan.in_order == ()
    assert set(plan.parallel) == {"README", "nonce", "data/0/1", "data/0/2", "data/0/3"}


def test_a_stale_leftover_past_the_bucket_index_goes_first_with_every_segment_ending_a_transaction_above_it() -> None:
    repository = local(6, segment(1, committed=True), segment(2), segment(3, committed=True), segment(4),
                       segment(5), segment(6, committed=True))
    remote = bucket(1, {1: 100, 2: 100, 3: 100, 4: 100, 5: 100, 7: 5})
    assert leftovers_to_verify(repository, remote) == ("data/0/2", "data/0/3", "data/0/4", "data/0/5")
    # 3 is another transaction's copy under a reused number; 7 is past the local index.
    plan = plan_upload(repository, remote, verified=("data/0/2", "data/0/4", "data/0/5"))
    assert plan.removed_first == ("data/0/7", "data/0/3")
    assert plan.parallel == ()
    assert plan.in_order == ("data/0/3", "data/0/6")


def test_leftovers_that_match_are_kept_and_the_upload_goes_on_from_them() -> None:
    repository = local(4, segment(1, committed=True), segment(2), segment(3), segment(4, committed=True))
    remote = bucket(1, {1: 100, 2: 100})
    plan = plan_upload(repository, remote, verified=("data/0/2",))
    assert plan.removed_first == ()
    assert plan.parallel == ("data/0/3",)
    assert plan.in_order == ("data/0/4",)


def test_a_committed_leftover_above_a_hole_goes_before_the_hole_is_filled() -> None:
    repository = local(5, segment(1, committed=True), segment(2), segment(3, committed=True), segment(4),
                       segment(5, committed=True))
    remote = bucket(1, {1: 100, 3: 100, 4: 100})
    plan = plan_upload(repository, remote, verified=("data/0/3", "data/0/4"))
    assert plan.removed_first == ("data/0/3",)
    assert plan.parallel == ("data/0/2",)
    assert plan.in_order == ("data/0/3", "data/0/5")


def test_segments_compaction_removed_leave_after_the_index_lowest_first() -> None:
    repository = local(12, segment(4, committed=True), segment(11), segment(12, committed=True))
    remote = bucket(4, {1: 100, 2: 100, 3: 100, 4: 100})
    plan = plan_upload(repository, remote)
    assert plan.removed_after == ("data/0/1", "data/0/2", "data/0/3")
    assert plan.in_order == ("data/0/12",)


def test_damaged_or_rewritten_files_are_compared_again_and_missing_ones_uploaded() -> None:
    repository = local(5, segment(1, committed=True), segment(2), segment(3, committed=True),
                       segment(5, committed=True))
    remote = bucket(3, {1: 100, 2: 90})
    plan = plan_upload(repository, remote, compared=("data/0/1", "nonce"))
    assert plan.parallel == ("nonce", "data/0/1", "data/0/2", "data/0/3")
    assert plan.in_order == ("data/0/5",)


def test_a_bucket_ahead_of_the_repository_is_refused() -> None:
    with pytest.raises(BucketAhead):
        plan_upload(local(3, segment(3, committed=True)), bucket(7, {3: 100, 7: 100}))


def test_a_real_repository_reads_as_borg_left_it(tmp_path: Path) -> None:
    env = {**os.environ, "BORG_PASSPHRASE": "x", "BORG_BASE_DIR": str(tmp_path / "base")}
    repository = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_bytes(os.urandom(300_000))
    for args in (("init", "-e", "repokey-blake2", str(repository)),
                 ("config", str(repository), "max_segment_size", "100000"),
                 ("create", f"{repository}::one", str(data))):
        subprocess.run([sys.executable, "-m", "borg", *args], env=env, check=True, capture_output=True, timeout=120)
    files = read_repository_files(str(repository))
    assert files.transaction == max(int(path.name[6:]) for path in repository.glob("index.*"))
    assert {"config", "nonce", "README", f"index.{files.transaction}"} <= set(files.root_files)
    assert files.segments[files.transaction].committed
    assert any(not item.committed for item in files.segments.values())  # the full ones of the create
    unfinished = repository / "data" / "0" / str(files.transaction + 1)
    unfinished.write_bytes(b"BORG_SEG" + COMMIT_TAG)
    assert read_repository_files(str(repository)).committed_segments() == files.committed_segments()
