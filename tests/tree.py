"""A full description of a file tree, to compare what a restore put back with what was saved."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def describe(root: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, mtime_ns, content or link target, hard-link group, xattrs)."""
    entries: dict[str, tuple] = {}
    inode_names: dict[int, str] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = os.lstat(path)
        relative = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        link_group = None
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            link_group = inode_names.setdefault(info.st_ino, relative)
        mtime = None if stat.S_ISDIR(info.st_mode) else info.st_mtime_ns // 1000
        entries[relative] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                             mtime, content, link_group, _xattrs(path))
    return entries


def _xattrs(path: Path) -> tuple:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((name, os.getxattr(path, name, follow_symlinks=False)) for name in names))
