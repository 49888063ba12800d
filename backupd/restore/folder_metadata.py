"""What a folder carries besides its entries, read and applied through a descriptor reached
without following a symbolic link: a target whose children are swapped keeps its own folder,
so the staged folder's metadata is applied to it (or its own put back on undo)."""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backupd.restore.nofollow import lstat, opened_folder

_XATTRS_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)


@dataclass
class FolderMetadata:
    """What a folder carries besides its entries."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: dict[str, str]  # name -> base64 of the value

    @classmethod
    def from_document(cls, entry: dict[str, Any] | None) -> FolderMetadata | None:
        return None if entry is None else cls(**entry)


def read_metadata(path: str) -> FolderMetadata:
    with opened_folder(path) as fd:
        info = os.fstat(fd)
        return FolderMetadata(
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            atime_ns=info.st_atime_ns,
            mtime_ns=info.st_mtime_ns,
            xattrs=_read_xattrs(fd),
        )


def _read_xattrs(fd: int) -> dict[str, str]:
    try:
        names = os.listxattr(fd)
    except OSError as error:
        if error.errno in _XATTRS_UNSUPPORTED:
            return {}
        raise
    return {name: base64.b64encode(os.getxattr(fd, name)).decode("ascii") for name in names}


def apply_metadata_if_present(path: str, metadata: FolderMetadata) -> None:
    if lstat(path) is not None:
        _apply_metadata(path, metadata)


def _apply_metadata(path: str, metadata: FolderMetadata) -> None:
    with opened_folder(path) as fd:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (metadata.uid, metadata.gid):
            os.chown(fd, metadata.uid, metadata.gid)
        os.chmod(fd, metadata.mode)
        _replace_xattrs(fd, metadata.xattrs)
        os.utime(fd, ns=(metadata.atime_ns, metadata.mtime_ns))
        os.fsync(fd)


def _replace_xattrs(fd: int, wanted: dict[str, str]) -> None:
    # Extended attributes are metadata, not content: one the filesystem or the kernel's
    # security module refuses to change must not make the whole restore fail.
    try:
        current = os.listxattr(fd)
    except OSError as error:
        if error.errno in _XATTRS_UNSUPPORTED:
            return
        raise
    for name in current:
        if name not in wanted:
            _ignore_refusal(lambda: os.removexattr(fd, name))
    for name, value in wanted.items():
        _ignore_refusal(lambda: os.setxattr(fd, name, base64.b64decode(value)))


def _ignore_refusal(change: Callable[[], None]) -> None:
    try:
        change()
    except OSError as error:
        if error.errno not in (*_XATTRS_UNSUPPORTED, errno.EPERM, errno.EACCES):
            raise
