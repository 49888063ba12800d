"""The lines of `borg prune --list`: what happens to each archive."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_KEEP_VERDICTS = ("Keeping archive", "Keeping checkpoint archive")
_PRUNE_VERDICTS = ("Would prune", "Pruning archive")
# A `--list` line is f"{verdict:<44} {name:<36} {local time} [{id}]", e.g.
# "Keeping archive (rule: daily #1):   box-2024-05-01T10:00:00Z   Wed, 2024-05-01 12:00:00 [46f9...]".
_VERDICT = re.compile(r"\A(?P<verdict>(?:[^:(]|\([^)]*\))+):\s+(?P<archive>\S.*)\Z")
_ARCHIVE = re.compile(r"\A(?P<name>.+?)\s+\S+, \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\s+\[[0-9a-f]+\]\s*\Z")


@dataclass(frozen=True)
class PruneVerdict:
    """One line of `borg prune --list`: what happens to one archive."""

    action: Literal["keep", "prune"]
    archive: str


def parse_prune_line(message: str) -> PruneVerdict | None:
    """The verdict in one `borg prune --list` line, or None if the line is not one."""
    match = _VERDICT.match(message.strip())
    if match is None:
        return None
    verdict = match["verdict"]
    if verdict.startswith(_KEEP_VERDICTS):
        action: Literal["keep", "prune"] = "keep"
    elif verdict.startswith(_PRUNE_VERDICTS):
        action = "prune"
    else:
        return None
    archive = _ARCHIVE.match(match["archive"])
    name = archive["name"] if archive else match["archive"].split()[0]
    return PruneVerdict(action, name)
