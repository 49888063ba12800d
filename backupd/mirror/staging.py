"""The root files a mirror run uploads (config, nonce, the index of one transaction with its
hints and integrity), copied into a private folder first: borg may commit again while the run
uploads, and the bucket must get one transaction's index, hints and integrity together."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from backupd.borg.transactions import RepositoryFiles, read_repository_files
from backupd.private_files import open_trusted_folder

UPLOAD_FOLDER = "mirror-upload"
ROOT_FILES = "root"
_TRIES = 3
_COPY_CHUNK = 1 << 20


class RepositoryBusy(Exception):
    """borg committed again each time the root files were copied."""


@dataclass(frozen=True)
class Staged:
    files: RepositoryFiles
    folder: str  # private: the lists of files given to rclone

    @property
    def root_files(self) -> str:
        """The copies of the root files: the source of the step that uploads the index."""
        return os.path.join(self.folder, ROOT_FILES)

    def write_list(self, name: str, paths: tuple[str, ...]) -> str:
        path = os.path.join(self.folder, name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.writelines(f"{item}\n" for item in paths)
        return path


def stage_repository(repository: str, state_dir: Path) -> Staged:
    """Read the repository's files and copy its root files into the state folder's upload
    folder; both name the same transaction. Blocking, for a worker thread."""
    folder = _fresh_folder(state_dir, UPLOAD_FOLDER)
    _empty(folder)
    staging = os.path.join(folder, ROOT_FILES)
    os.mkdir(staging, 0o700)
    for _ in range(_TRIES):
        files = read_repository_files(repository)
        _empty(staging)
        try:
            for name in files.root_files:
                _copy(os.path.join(repository, name), os.path.join(staging, name))
        except FileNotFoundError:
            continue  # a commit replaced the transaction's files meanwhile
        if read_repository_files(repository).transaction == files.transaction:
            return Staged(files, folder)
    raise RepositoryBusy(repository)


def write_upload_file(state_dir: Path, name: str, text: str) -> str:
    """A small file for rclone to upload, in the upload folder; its folder's path."""
    folder = _fresh_folder(state_dir, UPLOAD_FOLDER)
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return folder


def _fresh_folder(state_dir: Path, name: str) -> str:
    folder_fd = open_trusted_folder(state_dir)
    try:
        try:
            os.mkdir(name, 0o700, dir_fd=folder_fd)
        except FileExistsError:
            pass
    finally:
        os.close(folder_fd)
    path = os.path.join(state_dir, name)
    os.chmod(path, 0o700, follow_symlinks=False)
    return path


def _empty(folder: str) -> None:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _copy(source: str, target: str) -> None:
    reading = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(reading, "rb") as source_file:
        writing = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(writing, "wb") as target_file:
            shutil.copyfileobj(source_file, target_file, _COPY_CHUNK)
