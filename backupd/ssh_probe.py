"""Why an SSH repository cannot be reached, found by the daemon itself: one ssh run with the
daemon's own key and known_hosts, its words read. borg relays ssh's words only sometimes, and
then says little more than that the connection closed."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from backupctl.protocol import ErrorCode, RpcError
from backupd.borg.errors import AUTH_FAILED_MESSAGE, host_key_changed
from backupd.ssh import RemoteLocation, SshIdentity

# Lines of ssh's own words kept in the error's data, for admins.
SSH_WORDS_KEPT = 5
# Exit status of a shell that did not find the command, and of ssh when the link failed.
COMMAND_NOT_FOUND = 127
SSH_FAILED = 255


@dataclass(frozen=True)
class Reason:
    name: str
    code: str
    message: str
    markers: tuple[str, ...]


# Checked in this order: ssh names a changed host key before it tries the key.
REASONS = (
    Reason("host_key_changed", ErrorCode.HOST_KEY_CHANGED, "",
           ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")),
    Reason("key_refused", ErrorCode.AUTH_FAILED, AUTH_FAILED_MESSAGE, ("Permission denied",)),
    Reason("unknown_host", ErrorCode.REPOSITORY_UNREACHABLE,
           "There is no host named {host}: check the repository location {where}",
           ("Could not resolve hostname", "Name or service not known", "No address associated with hostname")),
    Reason("port_refused", ErrorCode.REPOSITORY_UNREACHABLE,
           "{host} refuses connections on port {port}: no SSH server listens there, or a firewall says no",
           ("Connection refused",)),
    Reason("host_unreachable", ErrorCode.REPOSITORY_UNREACHABLE,
           "{host} port {port} cannot be reached: the server or the network to it is down",
           ("timed out", "No route to host", "Network is unreachable", "Connection reset",
            "Connection closed by", "kex_exchange_identification")),
)
BORG_MISSING = Reason(
    "borg_missing", ErrorCode.REPOSITORY_UNREACHABLE,
    "The server at {where} signs this box in but has no borg to run: install borg there "
    "(or set remote_path to where it is)",
    ("command not found", "No such file or directory", "not found"),
)


def diagnose(identity: SshIdentity, server: RemoteLocation, remote_path: str | None, timeout: int,
             location: str) -> RpcError | None:
    """The error that says why borg could not use the repository over SSH, with ssh's own words
    in data.ssh and the reason's name in data.reason; None when ssh and borg answer there."""
    argv = [*shlex.split(identity.borg_rsh(timeout)), "-p", str(server.port),
            f"{server.user}@{server.host}" if server.user else server.host,
            shlex.join([remote_path or "borg", "--version"])]
    try:
        probe = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                               stdin=subprocess.DEVNULL, timeout=timeout * 2 + 5)
    except subprocess.TimeoutExpired:
        return _error(REASONS[-1], server, location, "ssh did not answer in time")
    words = "\n".join(line for line in probe.stderr.splitlines() if line.strip())
    reason = _reason(probe.returncode, words)
    return _error(reason, server, location, words) if reason is not None else None


def _reason(exit_code: int, words: str) -> Reason | None:
    if exit_code == SSH_FAILED:
        for reason in REASONS:
            if any(marker in words for marker in reason.markers):
                return reason
        return REASONS[-1]
    if exit_code == COMMAND_NOT_FOUND or (exit_code != 0 and any(m in words for m in BORG_MISSING.markers)):
        return BORG_MISSING
    return None


def _error(reason: Reason, server: RemoteLocation, location: str, words: str) -> RpcError:
    if reason.code == ErrorCode.HOST_KEY_CHANGED:
        base = host_key_changed(location)
        message = base.message
    else:
        message = reason.message.format(host=server.host, port=server.port, where=location)
    kept = words.splitlines()[-SSH_WORDS_KEPT:]
    return RpcError(reason.code, message, {"reason": reason.name, "ssh": kept})
