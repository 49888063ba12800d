"""What borg starts with: an environment without secrets or systemd's handles, and the
passphrase in a pipe rather than in the environment or argv."""

from __future__ import annotations

import os
from collections.abc import Mapping

PASSPHRASE_VARIABLES = frozenset(
    {"BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_NEW_PASSPHRASE", "BORG_PASSPHRASE_FD"}
)
# Meant for the daemon itself; borg must not answer systemd in its place.
SYSTEMD_VARIABLES = frozenset(
    {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
)
BORG_SETTINGS: Mapping[str, str] = {
    "BORG_EXIT_CODES": "modern",
    "BORG_DISPLAY_PASSPHRASE": "no",
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    # Lets borg remove a lock whose holder on this host is dead; a live holder's lock stays.
    "BORG_HOSTNAME_IS_UNIQUE": "yes",
}


def borg_environment(
    overrides: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) fit for borg: no secrets, no systemd handles."""
    if overrides and PASSPHRASE_VARIABLES & overrides.keys():
        raise ValueError("a passphrase goes through run_borg(passphrase=...), never the environment")
    source = os.environ if base is None else base
    environment = {
        name: value
        for name, value in source.items()
        if name not in PASSPHRASE_VARIABLES and name not in SYSTEMD_VARIABLES
    }
    environment.update(BORG_SETTINGS)
    environment.update(overrides or {})
    return environment


def passphrase_pipe(passphrase: str) -> int:
    """A pipe holding the whole passphrase with its write end closed; returns the read end.

    Borg reads the fd once, to EOF, and strips trailing newlines.
    """
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        remaining = memoryview(passphrase.encode("utf-8"))
        while remaining:
            written = os.write(write_fd, remaining)
            remaining = remaining[written:]
    except BlockingIOError:
        os.close(read_fd)
        raise ValueError("the passphrase is longer than a pipe can hold") from None
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd
