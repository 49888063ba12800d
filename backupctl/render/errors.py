"""An error backupd answered, with what to do next, as lines for people."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from backupctl.protocol import ErrorCode, RpcError


# What to run, when backupd says something is missing that a command sets.
NEXT_COMMAND = {
    "not_configured": "Run `backupctl configure REPOSITORY` first (see backupctl configure --help).",
}


def error_details(error: RpcError) -> list[str]:
    lines = []
    if error.code == ErrorCode.NOT_CONFIGURED and error.data.get("param") == "sources":
        lines.append("  Name the folders to back up with `backupctl change --source PATH`.")
    elif error.code in NEXT_COMMAND:
        lines.append("  " + NEXT_COMMAND[error.code])
    if error.code == ErrorCode.INVALID_PARAMS and "param" in error.data:
        lines.append(f"  (option: {error.data['param']})")
    elif error.code == ErrorCode.BUSY and isinstance(error.data.get("job"), dict):
        job = error.data["job"]
        lines.append(f"  (running: {job.get('kind')} job {job.get('id')})")
    lines.extend(f"  borg: {line}" for line in _last_lines(error.data))
    lines.extend(ssh_lines(error.data))
    return lines


def ssh_lines(data: Mapping[str, Any]) -> list[str]:
    """ssh's own words about a link that failed, as the daemon found them."""
    words = data.get("ssh")
    return [f"  ssh: {line}" for line in words] if isinstance(words, list) else []


def _last_lines(data: Mapping[str, Any]) -> Iterator[str]:
    lines = data.get("last_lines")
    if isinstance(lines, list):
        yield from (str(line) for line in lines[-3:])
