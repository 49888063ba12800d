"""Text for people: sizes, times, durations, progress lines, tables and labelled fields."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backupctl.paths import printable

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
UNKNOWN = "-"
ELLIPSIS = "..."
BAR_WIDTH = 20
# Below this many seconds, a moment in the past or future is "just now".
JUST_NOW = 5.0

_TIME_UNITS: tuple[tuple[str, float], ...] = (
    ("year", 365 * 86400.0),
    ("month", 30 * 86400.0),
    ("day", 86400.0),
    ("hour", 3600.0),
    ("minute", 60.0),
    ("second", 1.0),
)
# A count of a unit is shown once it reaches this many of the unit below
# (e.g. "1 day" from 24 hours, "1 month" from 60 days, so "45 days ago" stays precise).
_SHOWN_FROM = {"year": 365 * 86400.0, "month": 60 * 86400.0, "day": 86400.0, "hour": 3600.0, "minute": 60.0}


def human_size(size: int | float | None) -> str:
    """Bytes in binary units: "0 B", "512 B", "1.5 KiB", "1.2 GiB"."""
    if size is None:
        return UNKNOWN
    sign = "-" if size < 0 else ""
    value = float(abs(size))
    if value < 1024:
        return f"{sign}{int(value)} B"
    for unit in SIZE_UNITS[1:]:
        value /= 1024
        if round(value, 1) < 1024 or unit == SIZE_UNITS[-1]:
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def relative_time(when: float | None, now: float | None = None) -> str:
    """A moment as people say it: "just now", "2 hours ago", "in 5 minutes"."""
    if when is None:
        return UNKNOWN
    now = time.time() if now is None else now
    delta = now - when
    if abs(delta) < JUST_NOW:
        return "just now"
    distance = abs(delta)
    for unit, seconds in _TIME_UNITS:
        if distance >= _SHOWN_FROM.get(unit, seconds):
            amount = plural(int(distance // seconds), unit)
            return f"{amount} ago" if delta > 0 else f"in {amount}"
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """A length of time: "0.3 s", "42 s", "3 min 5 s", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return UNKNOWN
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def timestamp(when: float | None) -> str:
    """A moment in local time with its zone: "2024-05-01 14:03:22 CEST" (snapshot names are in UTC)."""
    if when is None:
        return UNKNOWN
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(when))


def clock(when: float | None = None) -> str:
    """The local time of day with its zone: "14:03:22 CEST"."""
    return time.strftime("%H:%M:%S %Z", time.localtime(time.time() if when is None else when))


@dataclass(frozen=True)
class Progress:
    """What a job's progress map says; every field may be missing."""

    files: int | None = None
    total_files: int | None = None
    original_size: int | None = None
    total_size: int | None = None
    deduplicated_size: int | None = None
    path: str | bytes | None = None  # bytes: a name that is not UTF-8
    percent: float | None = None
    eta: float | None = None
    step: str | None = None
    more_than_expected: bool | None = None
    expected_size: int | None = None

    @classmethod
    def from_wire(cls, progress: Mapping[str, Any] | None) -> Progress:
        progress = progress or {}
        return cls(**{name: progress.get(name) for name in cls.__dataclass_fields__})


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = int(max(0.0, min(percent, 100.0)) / 100 * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_line(progress: Mapping[str, Any] | Progress | None, width: int | None = None) -> str:
    """One line about a running job: bar, percent, ETA, files, sizes, then the current path,
    shortened from the left so that the line fits in width characters."""
    if not isinstance(progress, Progress):
        progress = Progress.from_wire(progress)
    parts: list[str] = []
    if progress.percent is not None:
        parts.append(f"{progress_bar(progress.percent)} {progress.percent:5.1f}%")
        if progress.eta is not None:
            parts.append(f"ETA {duration(progress.eta)}")
    elif progress.more_than_expected:
        parts.append(f"more than expected ({human_size(progress.expected_size)} last time)")
    if progress.step:
        parts.append(progress.step)
    if progress.files is not None:
        parts.append(_files_done(progress.files, progress.total_files))
    if progress.original_size is not None:
        parts.append(_bytes_done(progress.original_size, progress.total_size))
    if progress.deduplicated_size is not None:
        parts.append(f"{human_size(progress.deduplicated_size)} new")
    line = "  ".join(parts)
    if progress.path:
        line = _append_path(line, printable(progress.path), width)
    if width is not None and len(line) > width:
        line = line[: max(0, width - len(ELLIPSIS))] + ELLIPSIS if width > len(ELLIPSIS) else line[:width]
    return line


def _files_done(files: int, total_files: int | None) -> str:
    if not total_files:
        return plural(files, "file")
    return f"{files:,} of {plural(total_files, 'file')}"


def _bytes_done(size: int, total_size: int | None) -> str:
    if not total_size:
        return f"{human_size(size)} read"
    return f"{human_size(size)} of {human_size(total_size)}"


def _append_path(line: str, path: str, width: int | None) -> str:
    separator = "  " if line else ""
    if width is None:
        return line + separator + path
    room = width - len(line) - len(separator)
    if room >= len(path):
        return line + separator + path
    if room >= len(ELLIPSIS) + 8:
        return line + separator + ELLIPSIS + path[-(room - len(ELLIPSIS)) :]
    return line


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, headers first."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = [
        "  ".join(cell.ljust(widths[index]) for index, cell in enumerate(row)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def examples(items: Sequence[str | bytes], total: int, limit: int) -> str:
    """Up to limit of the items (paths), one per indented line, then how many more there are."""
    shown = list(items[:limit])
    lines = [f"  {printable(item)}" for item in shown]
    if total > len(shown):
        lines.append(f"  {ELLIPSIS} and {total - len(shown):,} more")
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """Labelled values, one per line, values aligned; a value's further lines are indented."""
    if not pairs:
        return ""
    label_width = max(len(label) for label, _ in pairs) + 2
    lines: list[str] = []
    for label, value in pairs:
        first, *rest = value.splitlines() or [""]
        lines.append(f"{label + ':':<{label_width}}{first}".rstrip())
        lines.extend(" " * label_width + line for line in rest)
    return "\n".join(lines)
