"""Inside snapshots as text: folder listings, a path's versions, changes between snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backupctl.render import text as fmt
from backupctl.render.text import shown_name

CHANGE_MARKS = {"added": "+", "removed": "-", "modified": "M"}


def entry_row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    name = shown_name(entry.get("name"))
    if entry.get("kind") == "folder" and entry.get("name") is not None:
        name += "/"
    if entry.get("target") is not None:
        name += " -> " + shown_name(entry["target"])
    owner = f"{entry.get('user') or entry.get('uid')}:{entry.get('group') or entry.get('gid')}" if entry.get("mode") else ""
    return (entry.get("mode") or "d?????????", owner,
            fmt.human_size(entry["size"]) if entry.get("size") is not None and entry.get("kind") != "folder" else "",
            fmt.timestamp(entry.get("mtime")) if entry.get("mtime") is not None else "", name)


def change_row(change: Mapping[str, Any]) -> tuple[str, ...]:
    size = change.get("size") if change.get("change") != "removed" else change.get("old_size")
    return (CHANGE_MARKS.get(change.get("change", ""), "?"), fmt.human_size(size) if size is not None else "",
            ",".join(change.get("what") or []), shown_name(change.get("path")))


def describe_snapshots(snapshots: Sequence[Mapping[str, Any]], now: float) -> str:
    if not snapshots:
        return "No snapshots yet."
    rows = [
        (str(entry.get("name")), fmt.timestamp(entry.get("time")), fmt.relative_time(entry.get("time"), now))
        for entry in snapshots
    ]
    return fmt.table(("NAME", "TIME", "AGE"), rows)


def describe_listing(first: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], more: bool) -> str:
    """A folder of a snapshot: its first page says which, and how many entries it holds."""
    rows = [entry_row(entry) for entry in entries]
    lines = [f"{first['snapshot']}:{shown_name(first.get('path'))}  ({fmt.plural(first['total'], 'entry')})"]
    if rows:
        lines.append(fmt.table(("MODE", "OWNER", "SIZE", "MODIFIED", "NAME"), rows))
    if more:
        lines.append(f"... {first['total'] - len(rows)} more (--limit)")
    return "\n".join(lines)


def describe_versions(found: Mapping[str, Any]) -> str:
    rows = [(str(version["snapshot"]), fmt.timestamp(version.get("time")), str(version.get("kind")),
             fmt.human_size(version.get("size")) if version.get("kind") != "folder" else "",
             fmt.timestamp(version.get("mtime"))) for version in found["versions"]]
    return "\n".join([
        f"{shown_name(found['path'])}: in {fmt.plural(len(found['versions']), 'snapshot')}",
        fmt.table(("SNAPSHOT", "TAKEN", "KIND", "SIZE", "MODIFIED"), rows),
        f"Restore one with: backupctl restore --snapshot SNAPSHOT --path {shown_name(found['path'])}",
    ])


def describe_changes(first: Mapping[str, Any], changes: Sequence[Mapping[str, Any]], more: bool) -> str:
    """What changed between two snapshots: the first page's counts, then one row a change."""
    counts = first["counts"]
    lines = [f"{first['from']} -> {first['to'] or 'the files now'}: {counts['added']} added, "
             f"{counts['removed']} removed, {counts['modified']} modified"]
    rows = [change_row(change) for change in changes]
    if rows:
        lines.append(fmt.table(("", "SIZE", "WHAT", "PATH"), rows))
    if more:
        lines.append(f"... {first['total'] - len(rows)} more (--limit)")
    return "\n".join(lines)
