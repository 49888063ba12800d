"""Archives as borg describes them: the archive maps of `borg list`, `info` and `create --json`,
the repository's stored size and encryption, and the names borg gives checkpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# An interrupted `borg create` leaves `<name>.checkpoint`, `<name>.checkpoint.N`.
_CHECKPOINT = re.compile(r"\.checkpoint(\.\d+)?\Z")


# Not frozen: reading the repository makes one per archive, and a frozen one costs eight times as much.
@dataclass(slots=True)
class BorgArchive:
    """One archive map of borg's ``--json`` output; what a command does not say is empty."""

    name: str
    id: str = ""
    time: float = 0.0
    duration: float = 0.0
    files: int = 0
    original_size: int = 0
    deduplicated_size: int = 0
    command_line: tuple[str, ...] = ()
    cwd: str = ""

    @property
    def is_checkpoint(self) -> bool:
        return is_checkpoint(self.name)


def listed_archives(borg_json: Any) -> list[BorgArchive]:
    """The archives of `borg list --json`, which says a name, an id and a time of each."""
    return [
        BorgArchive(archive.get("name", ""), archive.get("id", ""), borg_time(archive.get("start") or archive.get("time")))
        for archive in _archive_maps(borg_json)
    ]


def archives_in(borg_json: Any) -> list[BorgArchive]:
    """The archives of `borg info --json`, with their statistics and command lines."""
    return [archive_from(archive) for archive in _archive_maps(borg_json)]


def info_archive(borg_json: Any) -> BorgArchive:
    """The one archive `borg info --json` of a single archive describes (empty when it names none)."""
    listed = archives_in(borg_json)
    return listed[0] if listed else BorgArchive(name="")


def created_archive(borg_json: Any) -> BorgArchive:
    """The archive `borg create --json` made."""
    archive = borg_json.get("archive") if isinstance(borg_json, dict) else None
    return archive_from(archive if isinstance(archive, dict) else {})


def archive_from(archive: dict[str, Any]) -> BorgArchive:
    stats = archive.get("stats") or {}
    return BorgArchive(
        name=archive.get("name", ""),
        id=archive.get("id", ""),
        time=borg_time(archive.get("start") or archive.get("time")),
        duration=float(archive.get("duration") or 0.0),
        files=int(stats.get("nfiles") or 0),
        original_size=int(stats.get("original_size") or 0),
        deduplicated_size=int(stats.get("deduplicated_size") or 0),
        command_line=tuple(archive.get("command_line") or ()),
        cwd=archive.get("cwd") or "",
    )


def _archive_maps(borg_json: Any) -> list[dict[str, Any]]:
    listed = borg_json.get("archives") if isinstance(borg_json, dict) else None
    return [archive for archive in listed or () if isinstance(archive, dict)]


def stored_size(borg_json: Any) -> int:
    """Bytes the repository stores for all archives: deduplicated and compressed."""
    cache = borg_json.get("cache") if isinstance(borg_json, dict) else None
    stats = (cache or {}).get("stats") or {}
    return int(stats.get("unique_csize", 0))


def encryption_mode(borg_json: Any) -> str | None:
    """The repository's encryption mode in `borg info --json` (`repokey-blake2`, `keyfile`, ...)."""
    encryption = borg_json.get("encryption") if isinstance(borg_json, dict) else None
    mode = (encryption or {}).get("mode")
    return str(mode) if mode else None


def borg_time(value: str | None) -> float:
    """Borg prints local time without a zone; this process shares borg's zone."""
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


def is_checkpoint(name: str) -> bool:
    """A checkpoint borg wrote for an interrupted `borg create`: part of a snapshot, not one."""
    return _CHECKPOINT.search(name) is not None


def checkpoint_of(name: str) -> str | None:
    """The name of the archive a checkpoint was written for; None when name is no checkpoint."""
    match = _CHECKPOINT.search(name)
    return name[: match.start()] if match is not None else None


def checkpoints_glob(archive_glob: str) -> str:
    """A borg shell pattern for the checkpoints of the archives ``archive_glob`` matches."""
    return archive_glob + ".checkpoint*"
