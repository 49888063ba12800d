"""Inside snapshots as text: folder listings, a path's versions, changes between snapshots."""

from __future__ import annotations

from collections.abc import Sequence

from backupctl.snapshot_records import Change, ChangesPage, FolderEntry, FolderPage, PathVersions, SnapshotListed
from backupctl.render import text as fmt
from backupctl.render.text import shown_name

CHANGE_MARKS = {"added": "+", "removed": "-", "modified": "M"}


def entry_row(entry: FolderEntry) -> tuple[str, ...]:
    name = shown_name(entry.name)
    if entry.kind == "folder" and entry.name is not None:
        name += "/"
    if entry.target is not None:
        name += " -> " + shown_name(entry.target)
    owner = f"{entry.user or entry.uid}:{entry.group or entry.gid}" if entry.mode else ""
    return (entry.mode or "d?????????", owner,
            fmt.human_size(entry.size) if entry.size is not None and entry.kind != "folder" else "",
            fmt.timestamp(entry.mtime) if entry.mtime is not None else "", name)


def change_row(change: Change) -> tuple[str, ...]:
    size = change.size if change.change != "removed" else change.old_size
    return (CHANGE_MARKS.get(change.change, "?"), fmt.human_size(size) if size is not None else "",
            ",".join(change.what), shown_name(change.path))


def describe_snapshots(snapshots: Sequence[SnapshotListed], now: float) -> str:
    if not snapshots:
        return "No snapshots yet."
    rows = [(snapshot.name, fmt.timestamp(snapshot.time), fmt.relative_time(snapshot.time, now))
            for snapshot in snapshots]
    return fmt.table(("NAME", "TIME", "AGE"), rows)


def describe_listing(first: FolderPage, entries: Sequence[FolderEntry], more: bool) -> str:
    """A folder of a snapshot: its first page says which, and how many entries it holds."""
    rows = [entry_row(entry) for entry in entries]
    lines = [f"{first.snapshot}:{shown_name(first.path)}  ({fmt.plural(first.total, 'entry', 'entries')})"]
    if rows:
        lines.append(fmt.table(("MODE", "OWNER", "SIZE", "MODIFIED", "NAME"), rows))
    if more:
        lines.append(f"... {first.total - len(rows)} more (--limit)")
    return "\n".join(lines)


def describe_versions(found: PathVersions) -> str:
    rows = [(version.snapshot, fmt.timestamp(version.time), version.kind,
             fmt.human_size(version.size) if version.kind != "folder" else "",
             fmt.timestamp(version.mtime)) for version in found.versions]
    return "\n".join([
        f"{shown_name(found.path)}: in {fmt.plural(len(found.versions), 'snapshot')}",
        fmt.table(("SNAPSHOT", "TAKEN", "KIND", "SIZE", "MODIFIED"), rows),
        f"Restore one with: backupctl restore --snapshot SNAPSHOT --path {shown_name(found.path)}",
    ])


def describe_changes(first: ChangesPage, changes: Sequence[Change], more: bool) -> str:
    """What changed between two snapshots: the first page's counts, then one row a change."""
    counts = first.counts
    lines = [f"{first.from_snapshot} -> {first.to or 'the files now'}: {counts.added} added, "
             f"{counts.removed} removed, {counts.modified} modified"]
    rows = [change_row(change) for change in changes]
    if rows:
        lines.append(fmt.table(("", "SIZE", "WHAT", "PATH"), rows))
    if more:
        lines.append(f"... {first.total - len(rows)} more (--limit)")
    return "\n".join(lines)
