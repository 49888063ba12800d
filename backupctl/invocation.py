"""One run of a backupctl command: its options, its connection, where it writes, how it exits.

Exit codes: 0 success; 1 the daemon answered with an error (or the job failed, or a
confirmation was declined); 2 usage error; 3 the daemon cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from backupctl.client import Client
from backupctl.protocol import ErrorCode
from backupctl.render.text import to_json

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

CALL_TIMEOUT = 60.0


class UsageError(Exception):
    """The command line or its inputs cannot be used; exit code 2."""


@dataclass(frozen=True)
class Invocation:
    """One run of a command: its options, its connection and where it writes."""

    args: argparse.Namespace
    client: Client
    stdout: TextIO
    stderr: TextIO

    @property
    def as_json(self) -> bool:
        return bool(self.args.json)

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def emit_json(self, value: Any) -> None:
        self.say(to_json(value))


Command = Callable[[Invocation], int]


def exit_code_of(code: str) -> int:
    """Bad values of options are usage errors, whether backupctl or backupd finds them."""
    return EXIT_USAGE if code == ErrorCode.INVALID_PARAMS else EXIT_ERROR
