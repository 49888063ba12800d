"""`backupctl status` as a person runs it, a whole process, beside `borg info --json` of the same repository."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.raw_borg import RawBorg
from bench.stats import median, timed


class CommandFailed(Exception):
    """A timed command exited with an error."""


@dataclass
class ProcessTimes:
    backupctl_status: list[float] = field(default_factory=list)
    borg_info: list[float] = field(default_factory=list)

    @property
    def backupctl_median(self) -> float:
        return median(self.backupctl_status)

    @property
    def borg_info_median(self) -> float:
        return median(self.borg_info)


def measure_status_processes(socket_path: Path, raw: RawBorg, repository: Path, runs: int) -> ProcessTimes:
    """Wall time of each command, taking turns; one untimed run of each first brings their code into the page cache
    (and gives borg a cache of the repository, as a person who runs `borg info` has)."""
    backupctl = [sys.executable, "-m", "backupctl.cli", "--socket", str(socket_path), "status"]
    borg_info = ["info", "--json", str(repository)]
    _run(backupctl)
    raw.run(*borg_info)
    times = ProcessTimes()
    for _ in range(runs):
        times.backupctl_status.append(timed(lambda: _run(backupctl))[0])
        times.borg_info.append(timed(lambda: raw.run(*borg_info))[0])
    return times


def _run(command: list[str]) -> None:
    completed = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if completed.returncode != 0:
        raise CommandFailed(f"{' '.join(command)} exited with {completed.returncode}:\n"
                            f"{completed.stderr.decode(errors='replace')}")
