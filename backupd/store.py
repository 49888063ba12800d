"""Private, atomic persistence of JSON documents in the state folder.

Each document is one file, mode 0600, in a folder of mode 0700 that only root or the daemon's
user can change (see private_files). A write goes to a fresh temporary file created with that
mode, is synced, renamed over the old file, and the folder is synced, so a crash leaves either
the old document or the new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any

import trio

from backupd.private_files import (
    UnsafeFolderError, open_trusted_folder, remove_temporary_files, sync_folder, write_atomically,
)

PRIVATE_FILE_MODE = 0o600


class StoreError(Exception):
    """The state folder or one of its files cannot be used safely."""


class Store:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._save_lock = trio.Lock()
        self._held_folder: int | None = None

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
        for path in self.folder.glob("*.json"):
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

    def write(self, name: str, document: Any) -> None:
        data = json.dumps(document, separators=(",", ":")).encode("utf-8")
        write_atomically(self._path(name), data, PRIVATE_FILE_MODE)

    def set_aside(self, name: str, stamp: float) -> Path:
        """Move an unreadable document out of the way, keeping it for a person to look at."""
        path = self._path(name)
        aside = path.with_name(f"{path.name}.unreadable-{int(stamp)}")
        os.replace(path, aside)
        self._sync_folder()
        return aside

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        self._sync_folder()

    async def save(self, name: str, document: Any) -> None:
        """write() off the event loop, one save at a time so the last one wins."""
        async with self._save_lock:
            await trio.to_thread.run_sync(self.write, name, document)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def _sync_folder(self) -> None:
        sync_folder(self.folder)


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
