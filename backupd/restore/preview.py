"""What a restore would change, from the snapshot's item list and the disk as it is now."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

MAX_LISTED = 100
_TYPES = {"d": stat.S_IFDIR, "-": stat.S_IFREG, "l": stat.S_IFLNK}


@dataclass
class PathList:
    count: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.paths) < MAX_LISTED:
            self.paths.append(path)


@dataclass
class RestorePreview:
    written: PathList = field(default_factory=PathList)
    replaced: PathList = field(default_factory=PathList)
    removed: PathList = field(default_factory=PathList)
    kept: PathList = field(default_factory=PathList)  # not in the snapshot, matched by its excludes
    unchanged: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # targets the snapshot does not hold

    def to_record(self) -> dict[str, Any]:
        return {
            "written": {"count": self.written.count, "paths": self.written.paths},
            "replaced": {"count": self.replaced.count, "paths": self.replaced.paths},
            "removed": {"count": self.removed.count, "paths": self.removed.paths},
            "kept": {"count": self.kept.count, "paths": self.kept.paths},
            "unchanged": self.unchanged,
            "bytes": self.bytes,
        }


def preview(items: Iterable[dict[str, Any]], targets: Iterable[str],
            place_of: Callable[[str], str] = lambda archive_path: "/" + archive_path,
            excluded: Callable[[str], bool] = lambda place: False) -> RestorePreview:
    """Compare snapshot items (borg's --json-lines records) with the disk under each target;
    ``place_of`` says where an archive path goes on the box.

    Each target is restored whole, so anything under it that the snapshot lacks is removed,
    but for what ``excluded`` says the snapshot's exclude patterns match: that is kept.
    """
    result = RestorePreview()
    in_snapshot: set[str] = set()
    for item in items:
        path = place_of(item["path"])
        in_snapshot.add(path)
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            result.written.add(path)
            result.bytes += item.get("size", 0) if item.get("type") == "-" else 0
            continue
        if _same(item, current):
            # Counted as the overview counts: files, not the folders that hold them.
            result.unchanged += 0 if item.get("type") == "d" else 1
        else:
            result.replaced.add(path)
            result.bytes += item.get("size", 0) if item.get("type") == "-" else 0
    for target in targets:
        if target not in in_snapshot:
            result.missing.append(target)
        for path in _walk(target, excluded, result.kept):
            if path not in in_snapshot:
                result.removed.add(path)
    return result


def _same(item: dict[str, Any], current: os.stat_result) -> bool:
    kind = _TYPES.get(item.get("type", ""))
    if kind is None or stat.S_IFMT(current.st_mode) != kind:
        return False
    if kind == stat.S_IFDIR:
        return True
    mtime = item.get("mtime")
    same_time = mtime is not None and abs(datetime.fromisoformat(mtime).timestamp() - current.st_mtime) < 1e-3
    return same_time and item.get("size") == current.st_size


def _walk(target: str, excluded: Callable[[str], bool], kept: PathList) -> Iterable[str]:
    """Every path under target, but those that excluded matches (and what they hold), which
    go to kept."""
    if not os.path.lexists(target):
        return
    yield target
    if not os.path.isdir(target) or os.path.islink(target):
        return
    for folder, folders, files in os.walk(target):
        for name in list(folders) + files:
            path = os.path.join(folder, name)
            if excluded(path):
                kept.add(path)
                if name in folders:
                    folders.remove(name)
            else:
                yield path
