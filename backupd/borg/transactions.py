"""What a local borg repository shows on disk of its commits, read without running borg."""

from __future__ import annotations

import os
import re

from backupd.ssh import remote_location

# borg writes these anew, with the new transaction's number, at every commit.
_TRANSACTION_FILE = re.compile(r"(index|hints|integrity)\.\d+")


def repository_marker(location: str) -> tuple[str, ...] | None:
    """What changes whenever borg commits to a local repository: the names of its transaction
    files. None for a remote repository, or a local one that cannot be listed."""
    if remote_location(location) is not None:
        return None
    try:
        names = os.listdir(location.removeprefix("file://"))
    except OSError:
        return None
    return tuple(sorted(name for name in names if _TRANSACTION_FILE.fullmatch(name)))
