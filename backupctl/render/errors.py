"""An error backupd answered, with what to do next, as lines for people."""

from __future__ import annotations

from backupctl.protocol import ErrorCode, RpcError
from backupctl.records import ErrorData, RecordError


# What to run, when backupd says something is missing that a command sets.
NEXT_COMMAND = {
    "not_configured": "Run `backupctl configure REPOSITORY` first (see backupctl configure --help).",
}


def error_details(error: RpcError) -> list[str]:
    """What to do next, and the details the error carries; details of a shape this client
    cannot read are left out, the error itself still shown."""
    try:
        data = ErrorData.from_wire(error.data)
    except RecordError:
        data = ErrorData()
    lines = []
    if error.code == ErrorCode.NOT_CONFIGURED and data.param == "sources":
        lines.append("  Name the folders to back up with `backupctl change --source PATH`.")
    elif error.code in NEXT_COMMAND:
        lines.append("  " + NEXT_COMMAND[error.code])
    if error.code == ErrorCode.INVALID_PARAMS and data.param is not None:
        lines.append(f"  (option: {data.param})")
    elif error.code == ErrorCode.BUSY and data.job is not None:
        lines.append(f"  (running: {data.job.kind} job {data.job.id})")
    lines.extend(f"  borg: {line}" for line in (data.last_lines or [])[-3:])
    lines.extend(ssh_lines(data))
    return lines


def ssh_lines(data: ErrorData | None) -> list[str]:
    """ssh's own words about a link that failed, as the daemon found them."""
    return [f"  ssh: {line}" for line in data.ssh] if data is not None and data.ssh is not None else []
