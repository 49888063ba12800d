"""Where a restore may stage and keep content aside without another user interfering.

borg extracts into a staging folder by path: it joins the names it extracts to its working
directory as a string. If another user could rename any folder on that path while borg runs,
they could redirect borg's writes, as root, anywhere they like. So the staging folder and the
folder that holds a target's previous content live in a *safe* folder: one that only root
(or the daemon's own user) can change, reached from "/" through folders only they can change.
A folder owned by such a user, with no write permission for group or others (or with the
sticky bit, where others cannot rename what they do not own), is safe.

The staged content is renamed into place, so the safe folder must be on the same mount as
the target's parent. It is the deepest safe folder on that mount: the target's parent itself
when nobody else can write there, else the nearest safe folder above it.
"""

from __future__ import annotations

import os
import re
import stat

from backupd.paths import is_within
from backupd.restore.nofollow import components, lstat


class NoSafePlace(Exception):
    """No folder on the target's mount is safe from other users; the message says why."""


def trusted_uids() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


def unsafe_reason(info: os.stat_result, path: str) -> str | None:
    """Why other users could change the folder at path or rename its entries, None if they
    cannot."""
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if info.st_uid not in trusted_uids():
        return f"{path} belongs to uid {info.st_uid}"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return f"{path} can be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def safe_folder_for(parent: str) -> str:
    """The deepest safe folder on the mount of parent (or of its deepest existing ancestor,
    when parent is still to be created). Raises NoSafePlace."""
    mount_point = mount_point_of(parent)
    safe: str | None = None
    current = "/"
    reason = _reason_at(current)
    for name in [None, *components(parent)]:
        if name is not None:
            current = os.path.join(current, name)
            info = lstat(current)
            if info is None:
                break
            reason = reason or unsafe_reason(info, current)
        if reason is None and is_within(current, mount_point):
            safe = current
    if safe is None:
        raise NoSafePlace(
            f"there is no folder on the file system of {parent} that only root can change "
            f"({reason}), so a restore there cannot be staged safely"
        )
    return safe


def require_safe(folder: str) -> None:
    """Raise NoSafePlace unless folder and every folder on the way to it are safe."""
    current = "/"
    reason = _reason_at(current)
    for name in components(folder):
        if reason is not None:
            break
        current = os.path.join(current, name)
        info = lstat(current)
        reason = f"{current} does not exist" if info is None else unsafe_reason(info, current)
    if reason is not None:
        raise NoSafePlace(
            f"{folder} is a mount point, so the restore must stage inside it, but {reason}; "
            "a restore there cannot be staged safely"
        )


def _reason_at(path: str) -> str | None:
    info = lstat(path)
    return f"{path} does not exist" if info is None else unsafe_reason(info, path)


def mount_point_of(path: str) -> str:
    """The mount point that path (free of symbolic links) lies on: the longest one it is in."""
    candidates = [point for point in mount_points() if is_within(path, point)]
    return max(candidates, key=len, default="/")


def is_mount_point(path: str, points: set[str]) -> bool:
    """Whether path, not a symbolic link, is one of points or lies on another file system
    than its parent."""
    info = lstat(path)
    if info is None or stat.S_ISLNK(info.st_mode):
        return False
    parent = lstat(os.path.dirname(path))
    return path in points or (parent is not None and parent.st_dev != info.st_dev)


def mount_points() -> set[str]:
    """Every mount point of this mount namespace, bind mounts within one filesystem included."""
    try:
        with open("/proc/self/mountinfo", "rb") as file:
            lines = file.read().splitlines()
    except OSError:
        return set()
    return {_unescape_mountinfo(line.split(b" ")[4]) for line in lines if line.count(b" ") >= 4}


def _unescape_mountinfo(field: bytes) -> str:
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda match: bytes([int(match[1], 8)]), field))
