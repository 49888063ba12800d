"""A new file only its owner can read, in a folder no other user can change."""

from __future__ import annotations

import errno
import os
import stat

NOTE_FILE_MODE = 0o600


def write_new_private_file(path: str, text: str) -> None:
    """Create path, readable and writable by its owner only, in a folder no other user can change;
    an existing file or link is never replaced or followed."""
    folder = os.path.dirname(path) or "."
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_private_folder(os.fstat(folder_fd), folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(os.path.basename(path), flags, NOTE_FILE_MODE, dir_fd=folder_fd)
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    finally:
        os.close(folder_fd)


def _check_private_folder(info: os.stat_result, folder: str) -> None:
    if info.st_uid not in (0, os.geteuid()):
        raise PermissionError(errno.EPERM, f"the folder {folder} belongs to another user; choose one of your own")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise PermissionError(
            errno.EPERM, f"other users can write the folder {folder} (mode {mode:o}); choose one only you can write"
        )
