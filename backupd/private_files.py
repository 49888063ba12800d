"""Files the daemon writes, only into folders no other user can change.

A folder is trusted when it and every folder above it belong to root or to the daemon's own
user, and no other user can write it; a folder above it may be writable by others when it is
sticky (like /tmp), where no one can move or remove what is not theirs. A symbolic link on
the way is followed only when it belongs to root or the daemon's user. A file is written
through a descriptor of its trusted folder: to a temporary name no one can predict, created
with O_EXCL and O_NOFOLLOW, synced, renamed over the file, and the folder synced.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import pwd
import secrets
import stat
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
_MOST_LINKS = 40
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFolderError(PermissionError):
    """A folder, or the way to it, that another user owns or can change."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)


def open_trusted_folder(folder: Path) -> int:
    """A descriptor of folder, reached one folder at a time without following a link that
    another user could have placed or changed; UnsafeFolderError if any of them is not trusted."""
    path = os.path.normpath(os.path.abspath(folder))
    for _ in range(_MOST_LINKS + 1):
        opened = _walk(path)
        if isinstance(opened, int):
            return opened
        path = opened
    raise OSError(errno.ELOOP, f"too many symbolic links on the way to {folder}")


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace path with data in one step, in a trusted folder: readers see the old file or the
    new one, never a part, and no other user can have prepared the file that is written."""
    folder_fd = open_trusted_folder(path.parent)
    try:
        _write_at(folder_fd, path.name, data, mode)
    finally:
        os.close(folder_fd)


def remove_temporary_files(folder: Path, name: str) -> None:
    """Delete what an interrupted write of name (a glob pattern) left in folder."""
    folder_fd = open_trusted_folder(folder)
    try:
        for entry in os.listdir(folder_fd):
            if fnmatch.fnmatchcase(entry, f".{name}.*{TEMPORARY_SUFFIX}"):
                try:
                    os.unlink(entry, dir_fd=folder_fd)
                except FileNotFoundError:
                    pass
    finally:
        os.close(folder_fd)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_at(folder_fd: int, name: str, data: bytes, mode: int) -> None:
    temporary = f".{name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}"
    fd = os.open(temporary, _NEW_FILE_FLAGS, mode, dir_fd=folder_fd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=folder_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(folder_fd)


def _walk(path: str) -> int | str:
    """The trusted folder at path (which holds no "." or ".."), or the path to walk instead
    when a trusted link is met on the way."""
    names = [name for name in path.split("/") if name]
    fd = os.open("/", _FOLDER_FLAGS)
    try:
        _check_folder(os.fstat(fd), "/", last=not names)
        for index, name in enumerate(names):
            where = "/" + "/".join(names[: index + 1])
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                _check_owner(info, f"the symbolic link {where}")
                target = os.readlink(name, dir_fd=fd)
                return os.path.normpath(os.path.join(os.path.dirname(where), target, *names[index + 1:]))
            fd, parent = os.open(name, _FOLDER_FLAGS, dir_fd=fd), fd
            os.close(parent)
            _check_folder(os.fstat(fd), where, last=index == len(names) - 1)
        trusted, fd = fd, -1
        return trusted
    finally:
        if fd >= 0:
            os.close(fd)


def _check_folder(info: os.stat_result, where: str, *, last: bool) -> None:
    _check_owner(info, f"the folder {where}")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022 and (last or not mode & stat.S_ISVTX):
        raise UnsafeFolderError(f"the folder {where} can be written by other users (mode {mode:o})")


def _check_owner(info: os.stat_result, what: str) -> None:
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafeFolderError(f"{what} belongs to {_user_name(info.st_uid)}, not to root or the daemon's user")


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
