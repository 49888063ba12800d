"""The same snapshots through borgmatic, when it is installed: the wrapper people use in place of a daemon.

Its configuration is the flat form of borgmatic 1.8 and later. The bench never installs it;
without it these figures are left out with a note.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.options import COMPRESSION, PASSPHRASE
from bench.raw_borg import RawBorg


class BorgmaticFailed(Exception):
    """borgmatic exited with an error."""


@dataclass(frozen=True)
class Borgmatic:
    executable: str
    raw: RawBorg

    def version(self) -> str:
        completed = subprocess.run([self.executable, "--version"], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True)
        return completed.stdout.strip() or "unknown"

    def configure(self, config_path: Path, repository: Path, data: Path) -> None:
        """A configuration for one repository (made by raw borg beforehand) and one source folder."""
        config_path.write_text(
            f"source_directories:\n    - {json.dumps(str(data))}\n"
            f"repositories:\n    - path: {json.dumps(str(repository))}\n      label: bench\n"
            f"encryption_passphrase: {json.dumps(PASSPHRASE)}\n"
            f"compression: {COMPRESSION}\n"
            f"local_path: {json.dumps(borg_executable())}\n"
            f"borg_base_directory: {json.dumps(str(self.raw.base_dir))}\n"
        )

    def create(self, config_path: Path) -> None:
        completed = subprocess.run(
            [self.executable, "--config", str(config_path), "create"],
            env=self.raw.environment(), stdin=subprocess.DEVNULL, capture_output=True,
        )
        if completed.returncode != 0:
            raise BorgmaticFailed(f"borgmatic create exited with {completed.returncode}:\n"
                                  f"{completed.stderr.decode(errors='replace')}")


def find_borgmatic(raw: RawBorg) -> Borgmatic | None:
    executable = shutil.which("borgmatic")
    return Borgmatic(executable, raw) if executable else None


def borg_executable() -> str:
    """The borg of the bench's own environment, the one raw borg and the daemon run."""
    beside_python = Path(sys.executable).with_name("borg")
    return str(beside_python) if beside_python.exists() else "borg"
