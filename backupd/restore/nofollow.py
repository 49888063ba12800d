"""Filesystem operations that never follow a symbolic link.

Every path is walked one component at a time from "/" with O_NOFOLLOW, and every change is
made relative to a descriptor of the folder it happens in, so a symbolic link planted on the
way is refused rather than followed. Renames never replace an existing entry (renameat2 with
RENAME_NOREPLACE). A folder the restore made is recognised by its device and inode number
(`Identity`) before it is emptied or removed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

PRIVATE_FOLDER_MODE = 0o700
_RENAME_NOREPLACE = 1
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotTheSameFolder(OSError):
    """A folder the restore made was replaced by something else; it is left alone."""


@dataclass(frozen=True)
class Identity:
    device: int
    inode: int

    @classmethod
    def of(cls, info: os.stat_result) -> Identity:
        return cls(info.st_dev, info.st_ino)

    def document(self) -> list[int]:
        return [self.device, self.inode]

    @classmethod
    def from_document(cls, document: object) -> Identity | None:
        if document is None:
            return None
        device, inode = cast("tuple[int, int]", document)
        return cls(int(device), int(inode))


def components(path: str) -> list[str]:
    return [name for name in path.split("/") if name]


@contextmanager
def opened_folder(path: str) -> Iterator[int]:
    """A descriptor of the folder at path, reached without following any symbolic link."""
    fd = os.open("/", _OPEN_FOLDER)
    try:
        for name in components(path):
            child = os.open(name, _OPEN_FOLDER, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def lstat(path: str) -> os.stat_result | None:
    parent, name = os.path.split(path)
    try:
        with opened_folder(parent) as fd:
            if not name:
                return os.fstat(fd)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def deepest_existing(path: str) -> str:
    """path, or the nearest folder above it that exists."""
    while lstat(path) is None:
        path = os.path.dirname(path)
    return path


def rename(source: str, destination: str) -> None:
    """Rename source to destination, which must not exist, and sync both folders."""
    source_parent, source_name = os.path.split(source)
    destination_parent, destination_name = os.path.split(destination)
    with (
        opened_folder(source_parent) as source_fd,
        opened_folder(destination_parent) as destination_fd,
    ):
        rename_at(source_fd, source_name, destination_fd, destination_name, source, destination)
        os.fsync(destination_fd)
        if source_parent != destination_parent:
            os.fsync(source_fd)


def move_children(source: str, destination: str, skip: Collection[str] = ()) -> list[str]:
    """Rename every entry of folder source into folder destination; the entries not moved
    because destination already holds one of that name."""
    conflicts: list[str] = []
    with opened_folder(source) as source_fd, opened_folder(destination) as destination_fd:
        for name in os.listdir(source_fd):
            if name in skip:
                continue
            try:
                rename_at(
                    source_fd,
                    name,
                    destination_fd,
                    name,
                    os.path.join(source, name),
                    os.path.join(destination, name),
                )
            except FileExistsError:
                conflicts.append(name)
        os.fsync(destination_fd)
        os.fsync(source_fd)
    return conflicts


def _load_renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [
        ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def rename_at(
    source_fd: int, source_name: str, destination_fd: int, destination_name: str,
    source: str, destination: str,
) -> None:
    if _renameat2 is not None:
        result = _renameat2(
            source_fd, os.fsencode(source_name), destination_fd, os.fsencode(destination_name),
            _RENAME_NOREPLACE,
        )
        if result == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(error, os.strerror(error), source, None, destination)
    # renameat2 unknown to this libc or flag unsupported by this filesystem: check, then rename
    try:
        os.stat(destination_name, dir_fd=destination_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(source_name, destination_name, src_dir_fd=source_fd, dst_dir_fd=destination_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), source, None, destination)


def make_folder(path: str, mode: int) -> Identity:
    """Create the folder (never through a link) with exactly this mode; its identity."""
    parent, name = os.path.split(path)
    with opened_folder(parent) as parent_fd:
        os.mkdir(name, mode, dir_fd=parent_fd)
        fd = os.open(name, _OPEN_FOLDER, dir_fd=parent_fd)
        try:
            os.chmod(fd, mode)
            identity = Identity.of(os.fstat(fd))
        finally:
            os.close(fd)
        os.fsync(parent_fd)
    return identity


def ensure_folder_like(path: str, like: os.stat_result) -> None:
    """Make the folder at path, unless something is there, with the mode and owner of like."""
    if lstat(path) is not None:
        return
    make_folder(path, stat.S_IMODE(like.st_mode))
    with opened_folder(path) as fd:
        os.chown(fd, like.st_uid, like.st_gid)


@contextmanager
def opened_own_folder(path: str, identity: Identity | None) -> Iterator[int]:
    """A descriptor of a folder the restore made, checked to be that folder still."""
    with opened_folder(path) as fd:
        if identity is not None and Identity.of(os.fstat(fd)) != identity:
            raise NotTheSameFolder(f"{path} is no longer the folder the restore made; left as it is")
        yield fd


def remove_tree(path: str, identity: Identity | None = None) -> None:
    """Delete the folder at path and everything in it, never following a link, and only if it
    is still the folder with this identity (when one is given)."""
    parent, name = os.path.split(path)
    try:
        with opened_folder(parent) as parent_fd:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                raise NotTheSameFolder(
                    f"{path} should be a folder of the restore, but it is not; left as it is"
                )
            if identity is not None and Identity.of(info) != identity:
                raise NotTheSameFolder(
                    f"{path} is no longer the folder the restore made; left as it is"
                )
            _remove_entry_at(parent_fd, name, info)
            os.fsync(parent_fd)
    except FileNotFoundError:
        return


def _remove_entry_at(parent_fd: int, name: str, info: os.stat_result) -> None:
    if not stat.S_ISDIR(info.st_mode):
        _retry_writable(parent_fd, lambda: os.unlink(name, dir_fd=parent_fd))
        return
    fd = _open_child_folder(parent_fd, name)
    try:
        if Identity.of(os.fstat(fd)) != Identity.of(info):
            raise NotTheSameFolder(f"{name} changed while it was being deleted; left as it is")
        for entry in os.scandir(fd):
            try:
                child = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                _remove_entry_at(fd, entry.name, child)
            except FileNotFoundError:
                continue
    finally:
        os.close(fd)
    _retry_writable(parent_fd, lambda: os.rmdir(name, dir_fd=parent_fd))


def _open_child_folder(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _OPEN_FOLDER, dir_fd=parent_fd)
    except PermissionError:
        # A folder restored read-only (mode 0 or 0500) by a daemon without CAP_DAC_OVERRIDE.
        os.chmod(name, PRIVATE_FOLDER_MODE, dir_fd=parent_fd, follow_symlinks=False)
        return os.open(name, _OPEN_FOLDER, dir_fd=parent_fd)


def _retry_writable(parent_fd: int, remove: Callable[[], None]) -> None:
    try:
        remove()
    except FileNotFoundError:
        return
    except PermissionError:
        os.chmod(parent_fd, PRIVATE_FOLDER_MODE)
        remove()


def remove_empty_folder(path: str) -> None:
    """Remove a folder that must be empty by now; a RestoreError-worthy OSError otherwise."""
    parent, name = os.path.split(path)
    try:
        with opened_folder(parent) as parent_fd:
            os.rmdir(name, dir_fd=parent_fd)
            os.fsync(parent_fd)
    except FileNotFoundError:
        return


def remove_folder_if_empty(path: str, identity: Identity | None = None) -> None:
    """Remove the folder when it is empty and still the one with this identity; otherwise
    leave it."""
    parent, name = os.path.split(path)
    try:
        with opened_folder(parent) as parent_fd:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                return
            if identity is not None and Identity.of(info) != identity:
                return
            os.rmdir(name, dir_fd=parent_fd)
            os.fsync(parent_fd)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise


def why_unwritable(path: str) -> str | None:
    """Why the folder at path cannot take new entries now (a read-only mount), None if it can."""
    with opened_folder(path) as fd:
        if os.statvfs(fd).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
        if not os.access(".", os.W_OK, dir_fd=fd):
            return f"{path} cannot be written by backupd"
    return None


def sync_folder(path: str) -> None:
    with opened_folder(path) as fd:
        os.fsync(fd)
