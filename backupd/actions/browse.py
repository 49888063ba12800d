"""Looking inside snapshots: one folder at a time, one path across snapshots, and what changed
between two snapshots or between a snapshot and the live files.

Paths are places on the box, as a restore takes them; SnapshotContents maps them to the
archive's paths, for archives made by hand too. What borg lists of a snapshot never changes,
so the first look at a snapshot indexes it (backupd/browse/index.py) and later ones read the
index alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, cast

import trio

from backupctl.paths import from_wire, to_wire
from backupd.actions.parts import RepositoryParts, SnapshotParts
from backupd.actions.repository import chosen_archive
from backupd.borg import commands
from backupd.borg.archives import info_archive
from backupd.borg.diff_lines import diff_changes
from backupd.borg.tree_listing import tree_items
from backupd.browse import index as snapshot_index
from backupd.browse.cache import DEFAULT_MAX_BYTES, INDEX_SUFFIX, IndexFolder, index_folder
from backupd.browse.changes import ChangeList, build_changes, changes_of_diff, live_changes
from backupd.browse.index import Entry, SnapshotIndex, name_bytes
from backupd.errors import invalid_params, not_found
from backupd.params import Param, PathName
from backupd.paths import is_within
from backupd.restore.archive_roots import excludes_in, locate
from backupd.restore.contents import SnapshotContents
from backupd.state import ArchiveEntry

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
PAGE_PARAMS = (Param("limit", int), Param("cursor", str))
# A path is a str, or a bin for one that is not UTF-8: place_param checks it.
BROWSE_PARAMS = (Param("snapshot", str), Param("path", PathName), *PAGE_PARAMS)
VERSIONS_PARAMS = (Param("path", PathName, required=True),)
COMPARE_PARAMS = (Param("from", str, required=True), Param("to", str), *PAGE_PARAMS)
_CHUNKS_IN_FLIGHT = 4


def place_param(value: Any, param: str = "path") -> str:
    """A path as given on the wire (str, or bin for one that is not UTF-8), checked to be a
    place on the box: absolute and normalised."""
    path = from_wire(value)
    if not path.startswith("/") or "\0" in path or (path != "/" and os.path.normpath(path) != path):
        raise invalid_params(param, f"{path!r} must be an absolute, normalised path")
    return path






def _limit(params: dict[str, Any]) -> int:
    limit: int = params.get("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_params("limit", f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _cursor(params: dict[str, Any]) -> bytes:
    try:
        return bytes.fromhex(params.get("cursor", ""))
    except ValueError:
        raise invalid_params("cursor", "cursor must be one a previous answer gave") from None


class Browser:
    """The snapshots' indexes: built once each, one build per snapshot at a time."""

    def __init__(self, parts: RepositoryParts, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._parts = parts
        self.max_bytes = max_bytes
        self._building: dict[str, trio.Lock] = {}
        self._cleaned = False

    @asynccontextmanager
    async def opened(self, archive: ArchiveEntry) -> AsyncIterator[tuple[SnapshotIndex, SnapshotContents]]:
        """The snapshot's index, built when missing, and where its paths go on the box."""
        with index_folder(self._parts.settings().state_dir) as folder:
            name = _index_name(archive)
            await self._ensure(folder, archive, name)
            index = await trio.to_thread.run_sync(SnapshotIndex, folder.path(name))
            try:
                yield index, _contents(archive, index.facts)
            finally:
                index.close()

    async def contents_of(self, archive: ArchiveEntry) -> SnapshotContents:
        if archive.sources:
            return _contents(archive, {})
        async with self.opened(archive) as (_, contents):
            return contents

    async def live_changes(self, archive: ArchiveEntry, protected: tuple[str, ...], after: bytes,
                           limit: int) -> dict[str, Any]:
        """One page of what differs between the snapshot and the files on the box now; the
        files are compared again for each page."""
        async with self.opened(archive) as (index, contents):
            with index_folder(self._parts.settings().state_dir) as folder:
                temporary = folder.new_file(f"live-{archive.id}")
                try:
                    def compare_and_page() -> dict[str, Any]:
                        build_changes(folder.path(temporary), live_changes(index, contents, protected))
                        with ChangeList(folder.path(temporary)) as changes:
                            return changes.page(after, limit)
                    return await trio.to_thread.run_sync(compare_and_page)
                finally:
                    folder.remove(temporary)

    async def has_index(self, archive: ArchiveEntry) -> bool:
        with index_folder(self._parts.settings().state_dir) as folder:
            return folder.exists(_index_name(archive))

    async def _ensure(self, folder: IndexFolder, archive: ArchiveEntry, name: str) -> None:
        lock = self._building.setdefault(name, trio.Lock())
        async with lock:
            if not self._cleaned:
                folder.remove_leftovers()
                self._cleaned = True
            if folder.exists(name):
                folder.touch(name)
                return
            await self._build(folder, archive, name)
        self._building.pop(name, None)

    async def _build(self, folder: IndexFolder, archive: ArchiveEntry, name: str) -> None:
        config = self._parts.require_config()
        facts: dict[str, Any] = {"snapshot": archive.name}
        if not archive.sources:
            info = await self._parts.borg.run(commands.info_archive(config.repository, archive.name))
            details = info_archive(info.json)
            facts |= {"command_line": list(details.command_line), "cwd": details.cwd}
        temporary = folder.new_file(name)
        try:
            await stream_into_thread(
                partial(self._parts.borg.run, commands.list_tree(config.repository, archive.name), env={"TZ": "UTC"}),
                lambda chunks: snapshot_index.build(folder.path(temporary), tree_items(chunks), facts),
            )
            folder.place(temporary, name)
        finally:
            folder.remove(temporary)
        await trio.to_thread.run_sync(partial(folder.trim, self.max_bytes, keep=name))

    @asynccontextmanager
    async def changes(self, old: ArchiveEntry, new: ArchiveEntry) -> AsyncIterator[ChangeList]:
        """What changed from old to new, listed by borg diff once and kept."""
        name = f"diff-{old.id}-{new.id}{INDEX_SUFFIX}"
        with index_folder(self._parts.settings().state_dir) as folder:
            lock = self._building.setdefault(name, trio.Lock())
            async with lock:
                if folder.exists(name):
                    folder.touch(name)
                else:
                    await self._build_changes(folder, old, new, name)
            self._building.pop(name, None)
            changes = await trio.to_thread.run_sync(ChangeList, folder.path(name))
            try:
                yield changes
            finally:
                changes.close()

    async def _build_changes(self, folder: IndexFolder, old: ArchiveEntry, new: ArchiveEntry, name: str) -> None:
        config = self._parts.require_config()
        new_contents, old_contents = await self.contents_of(new), await self.contents_of(old)
        temporary = folder.new_file(name)
        try:
            await stream_into_thread(
                partial(self._parts.borg.run, commands.diff_archives(config.repository, old.name, new.name)),
                lambda chunks: build_changes(folder.path(temporary), changes_of_diff(
                    diff_changes(chunks), new_contents.place_of, old_contents.place_of)),
            )
            folder.place(temporary, name)
        finally:
            folder.remove(temporary)
        await trio.to_thread.run_sync(partial(folder.trim, self.max_bytes, keep=name))


async def stream_into_thread(run_borg: Any, consume: Any) -> Any:
    """Run borg with its stdout handed, chunk by chunk, to consume(chunks) in a worker thread,
    so neither the output nor its parsing weighs on the event loop; returns what consume did."""
    send, receive = trio.open_memory_channel[bytes](_CHUNKS_IN_FLIGHT)
    outcome: list[Any] = []

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                yield trio.from_thread.run(receive.receive)
            except trio.EndOfChannel:
                return

    async def consume_in_thread() -> None:
        async with receive:
            outcome.append(await trio.to_thread.run_sync(consume, chunks()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume_in_thread)
        async with send:
            await run_borg(on_stdout=send.send)
    return outcome[0]


def _index_name(archive: ArchiveEntry) -> str:
    return f"{archive.id}{INDEX_SUFFIX}"


def _contents(archive: ArchiveEntry, facts: dict[str, Any]) -> SnapshotContents:
    if archive.sources:
        places = {source: source.lstrip("/") for source in archive.sources}
        exclude = archive.exclude or ()
    else:
        places = locate(facts.get("roots", []), facts.get("command_line", []), facts.get("cwd", ""))
        exclude = excludes_in(facts.get("command_line", []))
    return SnapshotContents(places, archive.files or 0, archive.original_size or 0, tuple(exclude))


# browse


async def browse(parts: SnapshotParts, params: dict[str, Any]) -> dict[str, Any]:
    parts.repository.require_config()
    archive = chosen_archive(parts.repository.keeper.repository.archives, params.get("snapshot"))
    place = place_param(params.get("path", "/"))
    limit, after = _limit(params), _cursor(params)
    async with parts.browser.opened(archive) as (index, contents):
        listing = await trio.to_thread.run_sync(folder_listing, index, contents, place, after, limit)
    if listing is None:
        raise not_found(f"path {place} in snapshot {archive.name}")
    return cast(dict[str, Any], to_wire({"snapshot": archive.name, "path": place, **listing}))


def folder_listing(index: SnapshotIndex, contents: SnapshotContents, place: str, after: bytes,
                   limit: int) -> dict[str, Any] | None:
    """One page of what a place holds in the snapshot, or None when the snapshot lacks it.
    The folders above the snapshot's roots are shown too, so a listing starts at /."""
    if any(is_within(place, root) for root in contents.places):
        archive_path = contents.archive_path(place)
        entry = index.entry(archive_path)
        if entry is None:
            return None
        if entry.kind != "folder":
            return {"kind": entry.kind, "entries": [entry.to_record()], "total": 1, "cursor": None}
        entries = index.children(archive_path, after, limit + 1)
        return _page("folder", entries, index.count(archive_path), limit)
    names = sorted({_next_component(place, root) for root in contents.places if is_within(root, place) and root != place},
                   key=name_bytes)
    if not names:
        return None
    entries = []
    for name in names:
        child = place.rstrip("/") + "/" + name
        if child in contents.places:
            entry = index.entry(contents.places[child])
            if entry is None:
                continue  # a source that was missing when the snapshot was taken
            entries.append(replace(entry, name=name))
        else:
            entries.append(Entry(name, "folder", "", 0, 0, "", "", None, None, None))
    total = len(entries)
    return _page("folder", [entry for entry in entries if name_bytes(entry.name) > after][:limit + 1], total, limit)


def _page(kind: str, entries: list[Entry], total: int, limit: int) -> dict[str, Any]:
    more = len(entries) > limit
    shown = entries[:limit]
    return {"kind": kind, "entries": [entry.to_record() for entry in shown], "total": total,
            "cursor": name_bytes(shown[-1].name).hex() if more else None}


def _next_component(place: str, root: str) -> str:
    rest = root[len(place.rstrip("/")) + 1:]
    return rest.split("/", 1)[0]


# versions


@dataclass(frozen=True)
class Version:
    snapshot: str
    time: float
    entry: Entry

    def to_record(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "time": self.time, "kind": self.entry.kind, "size": self.entry.size,
                "mtime": self.entry.mtime, "mode": self.entry.mode}


async def versions(parts: SnapshotParts, params: dict[str, Any]) -> dict[str, Any]:
    """Each snapshot that holds the path, newest first, with its size and modification time there."""
    config = parts.repository.require_config()
    place = place_param(params["path"])
    browser = parts.browser
    found: list[Version] = []
    archives = sorted(parts.repository.keeper.repository.archives, key=lambda archive: archive.age_order, reverse=True)
    for archive in archives:
        if archive.sources and not await browser.has_index(archive):
            contents = _contents(archive, {})
            if not any(is_within(place, root) for root in contents.places):
                continue
            items = await stream_into_thread(
                partial(parts.repository.borg.run,
                        commands.list_tree(config.repository, archive.name, [contents.archive_path(place)]),
                        env={"TZ": "UTC"}),
                lambda chunks: list(tree_items(chunks)),
            )
            if items:
                item = items[0]
                found.append(Version(archive.name, archive.time, Entry(
                    place.rsplit("/", 1)[-1], item.kind, item.mode, item.uid, item.gid, item.user, item.group,
                    item.size, item.mtime, item.target)))
            continue
        async with browser.opened(archive) as (index, contents):
            if any(is_within(place, root) for root in contents.places):
                entry = await trio.to_thread.run_sync(index.entry, contents.archive_path(place))
                if entry is not None:
                    found.append(Version(archive.name, archive.time, entry))
    if not found:
        raise not_found(f"path {place} in any snapshot")
    return cast(dict[str, Any], to_wire({"path": place, "versions": [version.to_record() for version in found]}))


# compare


async def compare(parts: SnapshotParts, params: dict[str, Any]) -> dict[str, Any]:
    """What changed from one snapshot to another, or to the live files when no second is named."""
    parts.repository.require_config()
    archives = parts.repository.keeper.repository.archives
    old = chosen_archive(archives, params["from"])
    limit, after = _limit(params), _cursor(params)
    browser = parts.browser
    if "to" in params:
        new = chosen_archive(archives, params["to"])
        async with browser.changes(old, new) as changes:
            page = await trio.to_thread.run_sync(changes.page, after, limit)
        return cast(dict[str, Any], to_wire({"from": old.name, "to": new.name, **page}))
    protected = (str(parts.repository.settings().state_dir), str(parts.repository.borg.base_dir()))
    page = await browser.live_changes(old, protected, after, limit)
    return cast(dict[str, Any], to_wire({"from": old.name, "to": None, **page}))
