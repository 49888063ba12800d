"""Items borg was not allowed to create in a restore: device nodes, once CAP_MKNOD is gone
(the service unit's PrivateDevices=yes). borg warns about each and carries on."""

from __future__ import annotations

import os


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
