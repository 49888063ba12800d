"""The keeper: what a job saves does not grow with the archives, and what it saved reads back
after a clean stop, a crash, or a torn write."""

import json
from dataclasses import asdict

import pytest

from backupctl.protocol import JobState
from backupd.events import Changes
from backupd.jobs import Job
from backupd.keeper import Keeper
from backupd.mirror.state import MirrorState
from backupd.service import Service
from backupd.settings import Settings
from backupd.state import ArchiveEntry, Problem, RepositoryState, SnapshotSummary, in_age_order
from backupd.store import Store

START = 1_780_000_000.0

def archive(number: int) -> ArchiveEntry:
    return ArchiveEntry(name=f"edgebox-{number:06d}", id=f"{number:064x}", time=START + number,
                        sources=("/srv/data",), exclude=(), files=1200, original_size=4_000_000_000)

def open_keeper(folder) -> tuple[Keeper, list[Job]]:
    store = Store(folder)
    store.open()
    history: list[Job] = []
    keeper = Keeper(store, lambda: START, Changes(), lambda: [job.to_full_record() for job in history])
    saved = keeper.load()
    history.extend(saved.history.jobs)
    keeper.write_whole()  # as the daemon does at start
    return keeper, history

def as_saved(record) -> object:
    """A record as JSON holds it (tuples read back as lists)."""
    return json.loads(json.dumps(asdict(record)))


def reopen(keeper: Keeper) -> tuple[Keeper, list[Job]]:
    """A new daemon's keeper on the same folder, the old one gone (however it went)."""
    keeper.store.close()
    return open_keeper(keeper.store.folder)


async def run_a_snapshot_job(keeper: Keeper, history: list[Job], number: int) -> None:
    """What the daemon saves for one snapshot job: the job started, the new archive and facts, the job ended."""
    job = Job(id=str(number), kind="snapshot", trigger="schedule", started=START + number)
    history.insert(0, job)
    await keeper.save_job(job)
    summary = SnapshotSummary(name=f"edgebox-{number:06d}", time=START + number, duration=30.0, files=1200,
                              original_size=4_000_000_000, deduplicated_size=1_000_000)
    await keeper.update(last_attempt=START + number)
    await keeper.add_archive(archive(number), last_snapshot=summary, total_size=number * 1_000_000,
                             file_count=1200, problem=None, checkpoints_left=False)
    job.state, job.finished, job.result = JobState.SUCCEEDED, START + number + 30, {"snapshot": asdict(summary)}
    await keeper.save_job(job)

async def bytes_per_job(folder, archives: int) -> int:
    keeper, history = open_keeper(folder)
    await keeper.update(archives=tuple(archive(number) for number in range(archives)))
    keeper, history = reopen(keeper)
    before = keeper.store.bytes_written
    await run_a_snapshot_job(keeper, history, 900_000)
    return keeper.store.bytes_written - before

async def test_saving_a_job_costs_the_same_at_10_and_5000_archives(tmp_path):
    few = await bytes_per_job(tmp_path / "few", 10)
    many = await bytes_per_job(tmp_path / "many", 5000)
    assert few == many
    assert many < 4096 < (tmp_path / "many" / "state.json").stat().st_size / 100

async def test_what_was_saved_reads_back_after_a_crash_and_after_a_clean_stop(tmp_path):
    keeper, history = open_keeper(tmp_path)
    for number in range(5):
        await run_a_snapshot_job(keeper, history, number)
    await keeper.remove_archives(["edgebox-000001", "edgebox-000003"], total_size=42)
    await keeper.update(problem=Problem(code="repository_locked", message="locked", since=START, operation="snapshot"))
    await keeper.update_mirror_state(mirrored_archives=("edgebox-000000", "edgebox-000002"), last_success=START)
    await keeper.update_mirror_state(mirrored_archives=("edgebox-000002", "edgebox-000004"))
    assert (tmp_path / "state.journal").exists()

    crashed, crashed_history = reopen(keeper)  # no clean stop: the journals are replayed
    assert as_saved(crashed.repository) == as_saved(keeper.repository)
    assert as_saved(crashed.mirror_state) == as_saved(keeper.mirror_state)
    assert [job.to_full_record() for job in crashed_history] == [job.to_full_record() for job in history]
    assert not (tmp_path / "state.journal").exists()  # folded into state.json at start

    crashed.write_whole()
    stopped, _ = reopen(crashed)
    assert as_saved(stopped.repository) == as_saved(keeper.repository)
    assert [archive.name for archive in stopped.repository.archives] == [
        "edgebox-000000", "edgebox-000002", "edgebox-000004"]

async def test_a_journal_replayed_over_the_document_it_was_folded_into_changes_nothing(tmp_path):
    keeper, history = open_keeper(tmp_path)
    for number in range(3):
        await run_a_snapshot_job(keeper, history, number)
    await keeper.remove_archives(["edgebox-000000"])
    journals = {path.name: path.read_bytes() for path in tmp_path.glob("*.journal")}
    keeper.write_whole()
    for name, content in journals.items():  # as if the daemon died between the two steps
        (tmp_path / name).write_bytes(content)
        (tmp_path / name).chmod(0o600)
    again, again_history = reopen(keeper)
    assert as_saved(again.repository) == as_saved(keeper.repository)
    assert [job.to_full_record() for job in again_history] == [job.to_full_record() for job in history]

async def test_a_change_torn_by_a_crash_is_lost_alone(tmp_path):
    keeper, history = open_keeper(tmp_path)
    await run_a_snapshot_job(keeper, history, 1)
    with open(tmp_path / "state.journal", "ab") as journal:
        journal.write(b'{"set":{"total_size":99')
    again, _ = reopen(keeper)
    assert as_saved(again.repository) == as_saved(keeper.repository) and again.repository.problem is None

async def test_documents_of_the_previous_version_are_read_and_journaled_onto(tmp_path):
    old_state = RepositoryState(archives=(archive(1), archive(2)), total_size=7, configured_at=START)
    old_jobs = [Job(id="2", kind="snapshot", trigger="manual", started=START, state=JobState.SUCCEEDED,
                    finished=START + 1).to_full_record()]
    tmp_path.chmod(0o700)
    for name, document in (("state", asdict(old_state)), ("jobs", old_jobs),
                           ("mirror-state", asdict(MirrorState(mirrored_archives=("edgebox-000001",))))):
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
        (tmp_path / f"{name}.json").chmod(0o600)
    keeper, history = open_keeper(tmp_path)
    assert as_saved(keeper.repository) == as_saved(old_state) and [job.id for job in history] == ["2"]
    assert keeper.mirror_state.mirrored_archives == ("edgebox-000001",)
    await run_a_snapshot_job(keeper, history, 3)
    again, again_history = reopen(keeper)
    assert [archive.name for archive in again.repository.archives] == ["edgebox-000001", "edgebox-000002",
                                                                       "edgebox-000003"]
    assert [job.id for job in again_history] == ["3", "2"]

@pytest.mark.parametrize("document", ["state", "jobs", "mirror-state"])
async def test_an_unreadable_journal_is_set_aside_with_its_document(tmp_path, document):
    keeper, history = open_keeper(tmp_path)
    await run_a_snapshot_job(keeper, history, 1)
    await keeper.update_mirror_state(last_success=START)
    keeper.write_whole()
    (tmp_path / f"{document}.journal").write_bytes(b"\x00garbage\n{}\n")
    (tmp_path / f"{document}.journal").chmod(0o600)
    again, _ = reopen(keeper)
    assert again.repository.problem is not None and again.repository.problem.code == "state_unreadable"
    assert sorted(path.name for path in tmp_path.glob(f"{document}.*.unreadable-*")) == [
        f"{document}.journal.unreadable-{int(START)}", f"{document}.json.unreadable-{int(START)}"]


async def test_archives_are_kept_oldest_first_however_they_arrive_and_after_a_restart(tmp_path):
    keeper, _ = open_keeper(tmp_path)
    await keeper.update(archives=(archive(30), archive(10)))
    await keeper.add_archive(archive(20))
    await keeper.add_archive(archive(40))
    assert [entry.name for entry in keeper.repository.archives] == [archive(n).name for n in (10, 20, 30, 40)]
    listed = keeper.repository.archives
    await keeper.update(last_attempt=START + 50)
    assert keeper.repository.archives is listed, "a change of other facts must not sort the archives again"
    keeper, _ = reopen(keeper)
    assert [entry.name for entry in keeper.repository.archives] == [archive(n).name for n in (10, 20, 30, 40)]


async def test_a_list_read_in_age_order_is_taken_as_it_is(tmp_path):
    keeper, _ = open_keeper(tmp_path)
    read = in_age_order(archive(number) for number in (30, 10, 20))
    await keeper.update(archives=read)
    assert keeper.repository.archives is read
    assert [entry.name for entry in keeper.repository.archives] == [archive(n).name for n in (10, 20, 30)]


async def test_the_daemon_starts_from_what_was_saved_read_and_written_whole_in_workers(tmp_path):
    folder = tmp_path / "state"
    keeper, history = open_keeper(folder)
    for number in range(3):
        await run_a_snapshot_job(keeper, history, number)
    await keeper.remove_archives(["edgebox-000001"], total_size=42)
    keeper.store.close()

    store = Store(folder)
    store.open()
    service = Service(Settings(state_dir=folder, borg_base_dir=tmp_path / "base"), store)
    await service.load_off_loop()
    overview = service.overview.record()
    assert overview.snapshot_count == 2 and overview.total_size == 42
    assert overview.last_snapshot is not None and overview.last_snapshot.name == "edgebox-000002"
    assert [entry.name for entry in service.keeper.repository.archives] == ["edgebox-000000", "edgebox-000002"]
    records, _ = service.jobs.page(None, 10, 1 << 20)
    assert [record["id"] for record in records] == ["2", "1", "0"]
    assert all(record["state"] == "succeeded" for record in records)
    assert not (folder / "state.journal").exists() and not (folder / "jobs.journal").exists()
