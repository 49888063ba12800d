"""The names of this box's archives: `<host>-YYYY-MM-DDTHH:MM:SSZ`.

A repository may also hold archives made by hand with plain borg, archives of other boxes
(whose host names may start with this one's: `box` and `box-kitchen`) and checkpoints that
borg leaves when a snapshot is interrupted (`<name>.checkpoint`, `<name>.checkpoint.N`). Only
names of exactly this box's form are ever pruned or taken for this box's own.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from backupd.borg.archives import checkpoint_of, checkpoints_glob

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"
# The same shape as a borg shell pattern (`--glob-archives`): one character class per digit.
_TIME_GLOB = "".join("[0-9]" if char == "9" else char for char in "9999-99-99T99:99:99Z")


@dataclass(frozen=True)
class OwnArchives:
    """This box's archive names, by its host name."""

    prefix: str  # "<host>-"

    @classmethod
    def of_host(cls, hostname: str | None) -> OwnArchives:
        host = re.sub(r"[^A-Za-z0-9._-]+", "-", hostname or socket.gethostname()).strip("-.")
        return cls(f"{host or 'edgebox'}-")

    def name_at(self, now: float) -> str:
        """The name of a snapshot taken at now: one box's names sort by the time they were taken."""
        return self.prefix + datetime.fromtimestamp(now, timezone.utc).strftime(_TIME_FORMAT)

    def owns(self, name: str) -> bool:
        return re.fullmatch(re.escape(self.prefix) + _TIME_PATTERN, name) is not None

    def owns_checkpoint(self, name: str) -> bool:
        archive = checkpoint_of(name)
        return archive is not None and self.owns(archive)

    def glob(self) -> str:
        """A borg shell pattern that matches exactly the names this box gives its snapshots."""
        return _glob_literal(self.prefix) + _TIME_GLOB

    def checkpoint_glob(self) -> str:
        """A borg shell pattern for the checkpoints of this box's snapshots."""
        return checkpoints_glob(self.glob())


def _glob_literal(text: str) -> str:
    """Escape borg's shell-pattern metacharacters so text matches only itself."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)
