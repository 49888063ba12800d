"""Whether this daemon, in the mount namespace it runs in, could restore a source at all."""

from __future__ import annotations

import os
from collections.abc import Iterable

from backupd.errors import invalid_params
from backupd.restore.nofollow import why_unwritable


def why_unrestorable(source: str) -> str | None:
    """A restore writes into the source's folder, or the deepest one of its parents that exists,
    and into the source itself when it is a folder (a mount point is restored into)."""
    where = os.path.dirname(source.rstrip("/")) or "/"
    while not os.path.lexists(where):
        where = os.path.dirname(where)
    folders = [where] + ([source] if os.path.isdir(source) and not os.path.islink(source) else [])
    for folder in folders:
        try:
            reason = why_unwritable(folder)
        except OSError:
            continue
        if reason is not None:
            return reason
    return None


def refuse_unrestorable(sources: Iterable[str]) -> None:
    for source in sources:
        if (reason := why_unrestorable(source)) is not None:
            raise invalid_params("sources", f"{source} could not be restored: {reason} for the daemon "
                                 "(the service unit keeps /usr, /boot and /efi read-only)")
