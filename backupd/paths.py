"""Absolute, normalised paths and how they nest."""

from __future__ import annotations

from collections.abc import Sequence


def is_within(path: str, folder: str) -> bool:
    """path is folder or lies inside it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def overlapping(paths: Sequence[str]) -> tuple[str, str] | None:
    """Two of the paths where the second is the first or lies inside it, if any two are."""
    by_components = sorted(paths, key=lambda path: path.split("/"))
    for outer, inner in zip(by_components, by_components[1:]):
        if is_within(inner, outer):
            return outer, inner
    return None


def outermost(paths: Sequence[str]) -> tuple[str, ...]:
    """The paths that lie inside no other, each once, in their first order."""
    kept: list[str] = []
    for path in dict.fromkeys(paths):
        if not any(is_within(path, other) for other in paths if other != path):
            kept.append(path)
    return tuple(kept)
