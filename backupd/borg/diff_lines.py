"""The records of `borg diff --json-lines`, streamed: what changed about each path between two archives."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_KIND_WORDS = {"directory": "folder", "link": "link", "": "file"}
# A change of ctime alone says nothing a person can use: borg itself changes it (hard links).
_UNSEEN = frozenset({"ctime"})


@dataclass(frozen=True)
class DiffChange:
    path: str  # the archive path
    change: str  # added, removed or modified
    kind: str | None  # file, folder, link, other; None when borg does not say
    size: int | None = None  # now (added)
    old_size: int | None = None  # before (removed)
    what: tuple[str, ...] = ()  # for modified: content, mode, owner, mtime, link, kind
    details: dict[str, Any] = field(default_factory=dict)


def diff_changes(chunks: Iterable[bytes]) -> Iterator[DiffChange]:
    """borg diff's output, chunk by chunk as it arrives, as changes; unreadable lines are skipped."""
    for record in _json_lines(chunks):
        path, changes = record.get("path"), record.get("changes")
        if not isinstance(path, str) or not isinstance(changes, list):
            continue
        change = _diff_change(path, [item for item in changes if isinstance(item, dict)])
        if change is not None:
            yield change


def _json_lines(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    pending = b""
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        yield from _json_records(lines)
    yield from _json_records([pending])


def _json_records(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _diff_change(path: str, changes: list[dict[str, Any]]) -> DiffChange | None:
    for item in changes:
        kind_of_change = str(item.get("type", ""))
        for presence in ("added", "removed"):
            if kind_of_change == presence or kind_of_change.startswith(presence + " "):
                word = kind_of_change[len(presence):].strip()
                size = item.get("size") if isinstance(item.get("size"), int) else None
                return DiffChange(path, presence, _KIND_WORDS.get(word, "other"),
                                  size=size if presence == "added" else None,
                                  old_size=size if presence == "removed" else None)
    what: list[str] = []
    details: dict[str, Any] = {}
    kind = None
    for item in changes:
        kind_of_change = str(item.get("type", ""))
        if kind_of_change in _UNSEEN:
            continue
        if kind_of_change == "modified":
            what.append("content")
            kind = "file"
            details["added_bytes"] = item.get("added")
            details["removed_bytes"] = item.get("removed")
        elif kind_of_change == "changed link":
            what.append("link")
            kind = "link"
        else:
            what.append(kind_of_change)
    if not what:
        return None
    return DiffChange(path, "modified", kind, what=tuple(what), details=details)
