"""What the daemon knows and keeps: repository facts, the mirror's state, problems, and
saving them (with the configuration and the job history) in the state folder.

The repository state, the mirror's state and the job history are saved as journals: each
change is one line appended to `<name>.journal`, so what a job saves does not grow with the
number of archives or jobs. A document is written whole at start, at a clean stop, when its
journal has outgrown it, and after a change could not be saved. Every change replays to the
same result however often it is replayed (see store).
"""

from __future__ import annotations

import errno
import gc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from backupctl.paths import printable
from backupctl.protocol import ErrorCode, RpcError
from backupd.config import BackupConfig
from backupd.events import Change, Changes
from backupd.jobs import HISTORY_LIMIT, Job, KeptHistory, kept_history
from backupd.mirror.config import MirrorConfig
from backupd.mirror.state import MirrorState
from backupd.state import ArchiveEntry, Problem, RepositoryState, in_age_order
from backupd.store import Store, StoreError

log = logging.getLogger(__name__)

CONFIG_DOCUMENT = "config"
STATE_DOCUMENT = "state"
JOBS_DOCUMENT = "jobs"
MIRROR_DOCUMENT = "mirror"
MIRROR_STATE_DOCUMENT = "mirror-state"
JOURNALED = (STATE_DOCUMENT, JOBS_DOCUMENT, MIRROR_STATE_DOCUMENT)


@dataclass(frozen=True)
class Saved:
    """What an earlier run saved that others own: the configurations and the job history."""

    config: BackupConfig | None
    mirror: MirrorConfig | None
    history: KeptHistory


@dataclass(frozen=True)
class Loaded:
    """What an earlier run saved, as read: what others own, what the keeper holds, and the
    documents that could not be read (set aside)."""

    saved: Saved
    repository: RepositoryState
    mirror_state: MirrorState
    unreadable: tuple[str, ...]


class Keeper:
    def __init__(self, store: Store, now: Callable[[], float], changes: Changes,
                 history: Callable[[], list[dict[str, Any]]]) -> None:
        """``history`` gives the records of the job history, to save it whole."""
        self.store = store
        self._now = now
        self._changes = changes
        self.repository = RepositoryState()
        self.mirror_state = MirrorState()
        self.storage_problem: Problem | None = None
        # Held around borg calls, so the start-up read and a job never use the repository at once.
        self.lock = trio.Lock()
        self._history = history
        # Documents whose last change could not be saved: the next one writes them whole.
        self._unsaved: set[str] = set()

    def load(self) -> Saved:
        """Read what an earlier run saved, and take it (blocking)."""
        return self.adopt(self.read())

    def read(self) -> Loaded:
        """Read and parse what an earlier run saved, changing nothing the keeper holds: thousands
        of archives are read in a worker thread. A document that cannot be read is set aside and
        reported; the daemon starts with what it can trust and the repository rebuilds the rest."""
        unreadable: list[str] = []
        config = self._load_trusted(CONFIG_DOCUMENT, _fold_nothing, BackupConfig.from_record, unreadable)
        repository = self._load_trusted(STATE_DOCUMENT, _fold_state, RepositoryState.from_record, unreadable)
        saved_history = self._load_trusted(JOBS_DOCUMENT, _fold_history, _jobs_from_records, unreadable)
        mirror = self._load_trusted(MIRROR_DOCUMENT, _fold_nothing, MirrorConfig.from_record, unreadable)
        mirror_state = self._load_trusted(MIRROR_STATE_DOCUMENT, _fold_mirror_state, MirrorState.from_record, unreadable)
        return Loaded(saved=Saved(config=config, mirror=mirror, history=kept_history(saved_history or [])),
                      repository=repository or RepositoryState(), mirror_state=mirror_state or MirrorState(),
                      unreadable=tuple(unreadable))

    def adopt(self, loaded: Loaded) -> Saved:
        """Take what read() found; what could not be read is a problem, and is written whole next."""
        # Thousands of archives read in a worker live until the next full read: the collector's
        # full passes need not walk them (a pass over 10,000 took 15 ms on the event loop).
        gc.freeze()
        self.repository, self.mirror_state = loaded.repository, loaded.mirror_state
        self._unsaved.update(loaded.unreadable)
        if CONFIG_DOCUMENT in loaded.unreadable:
            message = "The saved configuration could not be read and was set aside; configure backups again"
            self.repository = replace(self.repository, problem=self.problem_from("config_unreadable", message, "configure"))
        elif loaded.unreadable:
            message = (f"Saved {' and '.join(loaded.unreadable)} could not be read and was set aside; "
                       "reading the repository again")
            self.repository = replace(self.repository, problem=self.problem_from("state_unreadable", message, "refresh"))
        return loaded.saved

    def _load_trusted(self, name: str, fold: Callable[[Any, list[Any]], Any], parse: Callable[[Any], Any],
                      unreadable: list[str]) -> Any:
        try:
            document = self.store.load(name)
            changes = self.store.load_journal(name) if name in JOURNALED else []
            if changes:
                document = fold(document, changes)
            return parse(document) if document is not None else None
        except (StoreError, KeyError, TypeError, ValueError, AttributeError) as error:
            aside = self.store.set_aside(name, self._now())
            log.error("%s could not be read (%s); set aside as %s", name, error, aside)
            unreadable.append(name)
            return None

    def write_whole(self) -> None:
        """Fold each journal into its document (blocking)."""
        self._written(_write_documents(self.store, self._documents()))

    async def save_whole(self) -> None:
        """write_whole() with the writing in a worker thread, as the daemon does at start and at
        a clean stop: thousands of archives are dumped there, not on the event loop."""
        self._written(await trio.to_thread.run_sync(_write_documents, self.store, self._documents()))

    def _documents(self) -> dict[str, Any]:
        """What each journaled document holds now; none changes once taken."""
        return {STATE_DOCUMENT: self.repository, JOBS_DOCUMENT: self._history(),
                MIRROR_STATE_DOCUMENT: self.mirror_state}

    def _written(self, names: Iterable[str]) -> None:
        self._unsaved.difference_update(names)

    async def update(self, **changes: Any) -> None:
        """Change what is known about the repository (a new `archives` replaces the list: given
        in age order, as ArchivesByAge, it is taken as it is), save the change and tell the others."""
        if "archives" in changes:
            changes["archives"] = in_age_order(changes["archives"])
        self.repository = replace(self.repository, **changes)
        if "archives" in changes:
            # Thousands of archives live until the next full read: the collector's full passes
            # (tens of ms on the event loop at 10,000) need not walk them.
            gc.freeze()
        await self._record(STATE_DOCUMENT, {"set": changes}, lambda: self.repository)

    async def add_archive(self, archive: ArchiveEntry, **changes: Any) -> None:
        """A new archive, and whatever else changed with it."""
        self.repository = self.repository.with_archive(archive, **changes)
        await self._record(STATE_DOCUMENT, {"set": changes, "add": [archive]}, lambda: self.repository)

    async def remove_archives(self, names: Iterable[str], **changes: Any) -> None:
        """Archives gone from the repository, and whatever else changed with them."""
        gone = frozenset(names)
        self.repository = self.repository.without_archives(gone, **changes)
        await self._record(STATE_DOCUMENT, {"set": changes, "remove": sorted(gone)}, lambda: self.repository)

    async def update_mirror_state(self, **changes: Any) -> None:
        previous = self.mirror_state
        self.mirror_state = replace(previous, **changes)
        change: dict[str, Any] = {"set": {key: value for key, value in changes.items() if key != "mirrored_archives"}}
        if "mirrored_archives" in changes:
            change["mirrored"] = _mirrored_change(previous.mirrored_archives, self.mirror_state.mirrored_archives)
        await self._record(MIRROR_STATE_DOCUMENT, change, lambda: self.mirror_state)

    async def save_job(self, job: Job) -> None:
        """A job started or ended: its record joins the saved history."""
        await self._record(JOBS_DOCUMENT, {"put": job.to_full_record()}, self._history, tell=False)

    async def save_config(self, config: BackupConfig | None) -> None:
        """Save (or, with None, delete) the configuration; a failure is the caller's error."""
        await self._save_or_delete(CONFIG_DOCUMENT, config.to_record() if config else None)

    async def save_mirror(self, mirror: MirrorConfig | None) -> None:
        """Save the mirror's configuration (its secret only in the state folder); None deletes it and its state."""
        await self._save_or_delete(MIRROR_DOCUMENT, mirror.to_record() if mirror else None)
        if mirror is None:
            await self._save_or_delete(MIRROR_STATE_DOCUMENT, None)
            self.mirror_state = MirrorState()

    async def _save_or_delete(self, name: str, document: Any) -> None:
        try:
            if document is None:
                await trio.to_thread.run_sync(self.store.delete, name)
            else:
                await self.store.save(name, document)
        except OSError as error:
            raise self.storage_error(error) from None

    async def _record(self, name: str, change: dict[str, Any], whole: Callable[[], Any], tell: bool = True) -> None:
        """Save a change; a failure (a full disk) is a problem to show, never a crash."""
        try:
            if name in self._unsaved:
                await self.store.save(name, whole())
            else:
                await self.store.record(name, change, whole)
        except OSError as error:
            self._unsaved.add(name)
            self.storage_problem = self._storage_problem(error)
            log.error("cannot save %s: %s", name, error)
        else:
            self._unsaved.discard(name)
            if not self._unsaved:
                self.storage_problem = None
        if tell:
            self._changes.tell(Change.STATUS)

    def storage_error(self, error: OSError) -> RpcError:
        """The typed error of a state folder that cannot be written."""
        problem = self._storage_problem(error)
        return RpcError(problem.code, problem.message)

    def _storage_problem(self, error: OSError) -> Problem:
        code = ErrorCode.DISK_FULL if error.errno == errno.ENOSPC else ErrorCode.STATE_UNWRITABLE
        message = f"The daemon cannot save its state in {self.store.folder}: {error.strerror or error}"
        since = self.storage_problem.since if self.storage_problem else self._now()
        return Problem(code=str(code), message=message, since=since, operation="store")

    def problem_from(self, code: str, message: str, operation: str) -> Problem:
        """A problem of the repository; one that goes on keeps the time it began."""
        current = self.repository.problem
        since = current.since if current and current.code == code else self._now()
        return Problem(code=code, message=printable(message), since=since, operation=operation)

    @property
    def state_dir(self) -> Path:
        return self.store.folder


def _write_documents(store: Store, documents: dict[str, Any]) -> list[str]:
    """Write each document that is there whole; the names of those written."""
    written = []
    for name, document in documents.items():
        if not store.exists(name):
            continue
        try:
            store.write(name, document)
            written.append(name)
        except OSError as error:
            log.error("cannot save %s: %s", name, error)
    return written


def _mirrored_change(before: Iterable[str], after: Iterable[str]) -> dict[str, list[str]]:
    """The names a mirror run copied and those gone from the bucket, as the journal records them."""
    old, new = frozenset(before), frozenset(after)
    return {"add": sorted(new - old), "remove": sorted(old - new)}


def _fold_nothing(document: Any, changes: list[Any]) -> Any:
    return document


def _fold_state(document: dict[str, Any] | None, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The saved repository state with its journal replayed."""
    record = dict(document or {})
    archives = {archive["name"]: archive for archive in record.get("archives", ())}
    for change in changes:
        fields = dict(change.get("set", {}))
        if "archives" in fields:
            archives = {archive["name"]: archive for archive in fields.pop("archives")}
        record.update(fields)
        for name in change.get("remove", ()):
            archives.pop(name, None)
        for archive in change.get("add", ()):
            archives.pop(archive["name"], None)
            archives[archive["name"]] = archive
    record["archives"] = list(archives.values())
    return record


def _fold_mirror_state(document: dict[str, Any] | None, changes: list[dict[str, Any]]) -> dict[str, Any]:
    record = dict(document or {})
    mirrored = dict.fromkeys(record.get("mirrored_archives", ()))
    for change in changes:
        record.update(change.get("set", {}))
        delta = change.get("mirrored", {})
        for name in delta.get("remove", ()):
            mirrored.pop(name, None)
        mirrored.update(dict.fromkeys(delta.get("add", ())))
    record["mirrored_archives"] = list(mirrored)
    return record


def _fold_history(document: list[dict[str, Any]] | None, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The saved history (newest first) with its journal replayed: a job's newest record wins."""
    records = list(document or [])
    for change in changes:
        record = change["put"]
        at = next((at for at, old in enumerate(records) if old["id"] == record["id"]), None)
        if at is None:
            records.insert(0, record)
            del records[HISTORY_LIMIT:]
        else:
            records[at] = record
    return records


def _jobs_from_records(records: list[dict[str, Any]]) -> list[Job]:
    return [Job.from_record(record) for record in records]
