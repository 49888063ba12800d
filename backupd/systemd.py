"""The systemd protocols: readiness and status notifications, socket activation, journal logs."""

from __future__ import annotations

import logging
import os
import socket
import time

from sdnotify import SystemdNotifier

_ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_FIRST_ACTIVATED_FD = 3
_MAX_STATUS_LENGTH = 200


class Notifier:
    """sd_notify messages; silent when NOTIFY_SOCKET is not set."""

    def __init__(self) -> None:
        self._notifier = SystemdNotifier() if os.environ.get("NOTIFY_SOCKET") else None
        if self._notifier is not None and self._notifier.socket is not None:
            # Sent from the event loop: a manager that does not read must never stall it.
            self._notifier.socket.setblocking(False)

    def send(self, *assignments: str) -> None:
        if self._notifier is not None:
            # sdnotify encodes Latin-1; escaping keeps any text deliverable.
            text = "\n".join(assignments).encode("ascii", "backslashreplace").decode("ascii")
            self._notifier.notify(text)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={_one_line(status)}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asks for, when the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_STATUS_LENGTH]


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us, if any; the variables are cleared either way."""
    values = {name: os.environ.pop(name, None) for name in _ACTIVATION_VARIABLES}
    if values["LISTEN_PID"] != str(os.getpid()) or not values["LISTEN_FDS"]:
        return None
    if int(values["LISTEN_FDS"]) < 1:
        return None
    sock = socket.socket(fileno=_FIRST_ACTIVATED_FD)
    sock.set_inheritable(False)
    return sock


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority, which journald reads from stderr."""

    _PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self._PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def under_journal() -> bool:
    return "JOURNAL_STREAM" in os.environ
