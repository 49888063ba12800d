"""Borg run directly, as a person would: the floor the daemon is measured against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.options import COMPRESSION, ENCRYPTION, PASSPHRASE

BORG = (sys.executable, "-m", "borg")


class BorgRunFailed(Exception):
    """A raw borg command exited with an error."""


@dataclass(frozen=True)
class RawBorg:
    """Borg with the passphrase in its environment and a BORG_BASE_DIR of its own."""

    base_dir: Path

    def environment(self) -> dict[str, str]:
        return dict(
            os.environ,
            BORG_PASSPHRASE=PASSPHRASE,
            BORG_EXIT_CODES="modern",
            BORG_BASE_DIR=str(self.base_dir),
        )

    def run(self, *args: str, cwd: Path | None = None) -> str:
        """Run borg to completion; its stdout."""
        completed = subprocess.run(
            [*BORG, *args], cwd=cwd, env=self.environment(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        if completed.returncode not in (0, 1):
            raise BorgRunFailed(
                f"borg {args[0]} exited with {completed.returncode}:\n{completed.stderr.decode(errors='replace')}"
            )
        return completed.stdout.decode(errors="replace")

    def init(self, repository: Path) -> None:
        self.run("init", f"--encryption={ENCRYPTION}", str(repository))

    def create(self, repository: Path, archive: str, data: Path) -> dict[str, Any]:
        """What `borg create --json` reports."""
        output = self.run("create", "--json", f"--compression={COMPRESSION}", f"{repository}::{archive}", str(data))
        return json.loads(output)

    def extract(self, repository: Path, archive: str, into: Path) -> None:
        self.run("extract", f"{repository}::{archive}", cwd=into)
