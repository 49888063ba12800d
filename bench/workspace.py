"""The bench's temporary folder: data, repositories, the daemon's files, extraction targets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def daemon_folder(self) -> Path:
        return self.root / "daemon"

    @property
    def raw_borg_base_dir(self) -> Path:
        return self.root / "raw-borg-base"

    @property
    def repositories(self) -> Path:
        return self.root / "repositories"

    def extraction(self, name: str) -> Path:
        """Beside the data, as the daemon's staging folder is: the same file system, the same parent."""
        return self.root / f"extraction-{name}"

    def repository(self, name: str) -> Path:
        return self.repositories / name


@contextmanager
def temporary_workspace() -> Iterator[Workspace]:
    """A fresh workspace, deleted afterwards whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="backupd-bench-"))
    workspace = Workspace(root)
    for folder in (workspace.repositories, workspace.raw_borg_base_dir):
        folder.mkdir()
    try:
        yield workspace
    finally:
        shutil.rmtree(root, ignore_errors=True)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
