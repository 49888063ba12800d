"""Items borg was not allowed to create in a restore: device nodes, once CAP_MKNOD is gone
(the service unit's PrivateDevices=yes). borg warns about each and carries on."""

from __future__ import annotations

import os
import re

from backupd.borg.log_json import LogMessage

PERMISSION_REFUSED = "BackupPermissionError"
# "<path>: [Errno 1] ..." or, naming the step that failed, "<path>: attrs: [Errno 1] ...".
_WARNING = re.compile(r"^(?P<path>.*?)(?:: [a-z_]+)?: \[Errno \d+\]", re.DOTALL)


def refused_path(event: LogMessage) -> str | None:
    """The archive path of an item borg was refused permission for, from its warning."""
    if event.msgid != PERMISSION_REFUSED or (match := _WARNING.match(event.message)) is None:
        return None
    return match["path"]


def missing_in(staging_fd: int, paths: list[str]) -> list[str]:
    """Those of paths (relative to the staging folder) that are not there after extraction."""
    missing = []
    for path in paths:
        try:
            os.lstat(path, dir_fd=staging_fd)
        except FileNotFoundError:
            missing.append("/" + path)
        except OSError:
            continue
    return missing
