"""Text for people: sizes, times, durations, tables, labelled fields, paths; and JSON for programs."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from backupctl.paths import escape_surrogates_in_json, for_json, printable

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
UNKNOWN = "-"
ELLIPSIS = "..."
SHOWN_TO_ADMINS = "shown to admins only"
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


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {nouns or noun + 's'}"


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


def path_list(paths: Sequence[str | bytes], separator: str) -> str:
    """Paths for people: a name's bytes that are not UTF-8 (sent as bin) shown as \\xXX."""
    return separator.join(map(printable, paths))


def path_lines(paths: Sequence[str | bytes] | None) -> str:
    """A list of paths, one a line; the daemon sends readers nil in its place."""
    if paths is None:
        return SHOWN_TO_ADMINS
    return path_list(paths, "\n") or "none"


def shown_name(name: Any) -> str:
    """A name for people: each byte that is not UTF-8 as \\xXX; a name hidden from readers as -."""
    return "-" if name is None else printable(name if isinstance(name, (str, bytes)) else str(name))


def to_json(value: Any, indent: int | None = 2) -> str:
    """JSON text; a path that is not UTF-8 is a string with each such byte as \\udcXX (docs/api.md)."""
    text = json.dumps(for_json(value), indent=indent, ensure_ascii=False, default=_json_fallback)
    return escape_surrogates_in_json(text)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
