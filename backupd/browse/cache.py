"""The folder of snapshot indexes in the state folder, bounded in size, used through a held
descriptor: index files are made there with O_EXCL | O_NOFOLLOW under unpredictable names and
renamed into place, so nothing another user made is ever opened."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backupd.private_files import TEMPORARY_SUFFIX, open_trusted_folder

FOLDER = "browse"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
INDEX_SUFFIX = ".db"
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class IndexFolder:
    """An open descriptor of the folder; paths through /proc/self/fd reach files by it."""

    fd: int

    def path(self, name: str) -> str:
        return f"/proc/self/fd/{self.fd}/{name}"

    def exists(self, name: str) -> bool:
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode)

    def new_file(self, name: str) -> str:
        """A new empty private file for name's content; returns its temporary name."""
        temporary = f".{name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}"
        os.close(os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=self.fd))
        return temporary

    def place(self, temporary: str, name: str) -> None:
        os.rename(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def touch(self, name: str) -> None:
        """Marks an index as used, so the least recently used ones go first."""
        try:
            os.utime(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            pass

    def trim(self, max_bytes: int, keep: str | None = None) -> None:
        """Remove the least recently used indexes until the rest fit in max_bytes, and what an
        interrupted build left."""
        files = []
        for name in os.listdir(self.fd):
            if name.endswith(TEMPORARY_SUFFIX) and name.startswith("."):
                continue
            try:
                info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                files.append((info.st_mtime, info.st_size, name))
        total = sum(size for _, size, _ in files)
        for _, size, name in sorted(files):
            if total <= max_bytes:
                break
            if name != keep:
                self.remove(name)
                total -= size

    def remove_leftovers(self) -> None:
        for name in os.listdir(self.fd):
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                self.remove(name)


@contextmanager
def index_folder(state_dir: Path) -> Iterator[IndexFolder]:
    """The index folder inside the trusted state folder, made private (0700) when missing."""
    state_fd = open_trusted_folder(state_dir)
    try:
        try:
            os.mkdir(FOLDER, 0o700, dir_fd=state_fd)
        except FileExistsError:
            pass
        fd = os.open(FOLDER, _FOLDER_FLAGS, dir_fd=state_fd)
    finally:
        os.close(state_fd)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise OSError(errno.EPERM, f"{state_dir / FOLDER} is not private to the daemon")
        yield IndexFolder(fd)
    finally:
        os.close(fd)
