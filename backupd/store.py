"""Private, atomic persistence of JSON documents in the state folder.

Each document is one file, mode 0600, in a folder of mode 0700 that only root or the daemon's
user can change (see private_files). A write goes to a fresh temporary file created with that
mode, is synced, renamed over the old file, and the folder is synced, so a crash leaves either
the old document or the new one.

A document may also have a journal beside it (`<name>.journal`): one JSON line per change
since the document was last written whole, each append synced. What a change means is its
owner's business; replaying a change twice must give what replaying it once gives, since a
crash between writing the document whole and removing the journal replays the journal again.
A last line a crash tore is ignored and cut off.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import trio

from backupd.private_files import (
    UnsafeFolderError, open_trusted_folder, remove_temporary_files, sync_folder, write_atomically,
)

PRIVATE_FILE_MODE = 0o600
JOURNAL_SUFFIX = ".journal"
# A journal is folded into its document once it outgrows both the document and this.
JOURNAL_FLOOR = 1 << 20
_JOURNAL_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class StoreError(Exception):
    """The state folder or one of its files cannot be used safely."""


class Store:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._save_lock = trio.Lock()
        self._held_folder: int | None = None
        self.bytes_written = 0

    def open(self) -> None:
        """Create the folder if needed, refuse one that others can read or change, and hold it
        exclusively: a second daemon on the same folder would hand out the same job ids and
        overwrite this one's state."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._held_folder is None:
                self._held_folder = _locked(open_trusted_folder(self.folder), self.folder)
            mode = stat.S_IMODE(os.fstat(self._held_folder).st_mode)
            remove_temporary_files(self.folder, "*.json")
        except UnsafeFolderError as error:
            raise StoreError(f"refusing the state folder {self.folder}: {error.strerror}") from None
        except OSError as error:
            raise StoreError(f"cannot use state folder {self.folder}: {error}") from None
        if mode & 0o077:
            raise StoreError(
                f"state folder {self.folder} is open to other users (mode {mode:o}); make it 0700"
            )
        for path in (*self.folder.glob("*.json"), *self.folder.glob(f"*{JOURNAL_SUFFIX}")):
            file_mode = stat.S_IMODE(path.stat().st_mode)
            if file_mode & 0o077:
                raise StoreError(f"state file {path} is open to other users (mode {file_mode:o})")

    def close(self) -> None:
        """Let another daemon use the folder."""
        if self._held_folder is not None:
            os.close(self._held_folder)
            self._held_folder = None

    def load(self, name: str) -> Any | None:
        path = self._path(name)
        try:
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), encoding="utf-8") as file:
                return json.load(file)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StoreError(f"cannot read {path}: {error}") from None

    def load_journal(self, name: str) -> list[Any]:
        """The changes recorded since the document was written whole, oldest first. A last
        line that is not whole is what a crash tore: it is cut off and ignored."""
        path = self._journal_path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error}") from None
        try:
            with open(fd, "rb", closefd=False) as file:
                lines = file.read().split(b"\n")
            changes, kept = [], 0
            for number, line in enumerate(lines):
                try:
                    changes.append(json.loads(line))
                    kept += len(line) + 1
                except ValueError:
                    if number < len(lines) - 1 and any(lines[number + 1:]):
                        raise StoreError(f"cannot read {path}: line {number + 1} is not JSON") from None
                    break
            if kept < sum(len(line) + 1 for line in lines) - 1:
                os.ftruncate(fd, kept)
                os.fsync(fd)
            return changes
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error}") from None
        finally:
            os.close(fd)

    def write(self, name: str, document: Any) -> None:
        """Write the document whole; its journal, now folded into it, goes."""
        data = json.dumps(document, separators=(",", ":"), default=_plain).encode("utf-8")
        write_atomically(self._path(name), data, PRIVATE_FILE_MODE)
        self.bytes_written += len(data)
        if self._journal_path(name).exists():
            self._journal_path(name).unlink(missing_ok=True)
            self._sync_folder()

    def append(self, name: str, change: Any) -> bool:
        """Add one change to the document's journal, synced; whether the journal has outgrown
        its document, so that the document is best written whole."""
        line = json.dumps(change, separators=(",", ":"), default=_plain).encode("utf-8") + b"\n"
        folder_fd = self._held_folder if self._held_folder is not None else open_trusted_folder(self.folder)
        try:
            fd = os.open(self._journal_path(name).name, _JOURNAL_FLAGS, PRIVATE_FILE_MODE, dir_fd=folder_fd)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # a part of a line would make every later one unreadable
                    raise
            finally:
                os.close(fd)
            if start == 0:
                os.fsync(folder_fd)
            try:
                document_size = os.stat(self._path(name).name, dir_fd=folder_fd, follow_symlinks=False).st_size
            except FileNotFoundError:
                document_size = 0
        finally:
            if folder_fd != self._held_folder:
                os.close(folder_fd)
        self.bytes_written += len(line)
        return start + len(line) > max(document_size, JOURNAL_FLOOR)

    def set_aside(self, name: str, stamp: float) -> Path:
        """Move an unreadable document and its journal out of the way, keeping them for a
        person to look at."""
        suffix = f".unreadable-{int(stamp)}"
        for path in (self._path(name), self._journal_path(name)):
            try:
                os.replace(path, path.with_name(path.name + suffix))
            except FileNotFoundError:
                pass
        self._sync_folder()
        return self._path(name).with_name(self._path(name).name + suffix)

    def exists(self, name: str) -> bool:
        """Whether the document or its journal is there."""
        return self._path(name).exists() or self._journal_path(name).exists()

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        self._journal_path(name).unlink(missing_ok=True)
        self._sync_folder()

    async def save(self, name: str, document: Any) -> None:
        """write() off the event loop, one save at a time so the last one wins."""
        async with self._save_lock:
            await trio.to_thread.run_sync(self.write, name, document)

    async def record(self, name: str, change: Any, whole: Callable[[], Any]) -> None:
        """append() off the event loop; when the journal has outgrown the document, the
        document whole() gives (what the daemon holds now) is written in its place."""
        async with self._save_lock:
            if await trio.to_thread.run_sync(self.append, name, change):
                await trio.to_thread.run_sync(self.write, name, whole())

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def _journal_path(self, name: str) -> Path:
        return self.folder / f"{name}{JOURNAL_SUFFIX}"

    def _sync_folder(self) -> None:
        sync_folder(self.folder)


def _plain(value: Any) -> Any:
    """Records (frozen dataclasses) as maps: a document is dumped in a worker thread, not built on the loop."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _locked(folder_fd: int, folder: Path) -> int:
    """The folder's descriptor, holding an exclusive lock that lasts as long as the process."""
    try:
        fcntl.flock(folder_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder_fd)
        raise StoreError(
            f"another backupd is running with the state folder {folder}; stop it first, "
            "or give this one its own folder with --state-dir"
        ) from None
    except OSError:
        os.close(folder_fd)
        raise
    return folder_fd
