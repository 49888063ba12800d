"""A running job's progress in one line: bar, percent, ETA, files, sizes, the current path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backupctl.paths import printable
from backupctl.records import Progress
from backupctl.render.text import ELLIPSIS, duration, human_size, plural

BAR_WIDTH = 20


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = int(max(0.0, min(percent, 100.0)) / 100 * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_line(progress: Mapping[str, Any] | Progress | None, width: int | None = None) -> str:
    """One line about a running job: bar, percent, ETA, files, sizes, then the current path,
    shortened from the left so that the line fits in width characters."""
    if progress is None:
        progress = Progress()
    elif not isinstance(progress, Progress):
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
