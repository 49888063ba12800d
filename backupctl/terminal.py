"""The terminal: secrets typed at a prompt, confirmations, progress redrawn in place."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import time
from typing import TextIO

from backupctl.invocation import Invocation, UsageError
from backupctl.records import Progress
from backupctl.render.progress import progress_line

PASSPHRASE_VARIABLE = "BACKUPCTL_PASSPHRASE"
SECRET_VARIABLE = "BACKUPCTL_MIRROR_SECRET"
PLAIN_PROGRESS_INTERVAL = 2.0
CONFIRMATION_WORD = "yes"


def terminal_width(stream: TextIO) -> int:
    return shutil.get_terminal_size().columns if stream.isatty() else 100


def read_passphrase(passphrase_file: str | None) -> str:
    """From the file (- for stdin), else $BACKUPCTL_PASSPHRASE, else a prompt."""
    if passphrase_file is not None:
        return _passphrase_from_file(passphrase_file)
    from_environment = os.environ.get(PASSPHRASE_VARIABLE)
    if from_environment:
        return from_environment
    return prompt_passphrase()


def _passphrase_from_file(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.readline()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(f"cannot read the passphrase file {path}: {reason}") from None
    passphrase = text.rstrip("\r\n")
    if not passphrase:
        raise UsageError(f"the passphrase file {path} is empty")
    return passphrase


def prompt_passphrase(repeat: bool = True) -> str:
    if not sys.stdin.isatty():
        passphrase = sys.stdin.readline().rstrip("\r\n")
        if not passphrase:
            raise UsageError(
                f"no passphrase: use --passphrase-file, set {PASSPHRASE_VARIABLE} or run in a terminal"
            )
        return passphrase
    passphrase = ask_passphrase("Repository passphrase: ")
    if not passphrase:
        raise UsageError("the passphrase must not be empty")
    if repeat and ask_passphrase("Repeat the passphrase: ") != passphrase:
        raise UsageError("the passphrases do not match")
    return passphrase


def ask_passphrase(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise UsageError("no passphrase given") from None


def read_secret(secret_file: str | None) -> str:
    """From the file (- for stdin), else $BACKUPCTL_MIRROR_SECRET, else a prompt: never argv."""
    try:
        if secret_file == "-":
            secret = sys.stdin.readline()
        elif secret_file is not None:
            with open(secret_file, encoding="utf-8") as file:
                secret = file.readline()
        elif os.environ.get(SECRET_VARIABLE):
            secret = os.environ[SECRET_VARIABLE]
        elif sys.stdin.isatty():
            secret = getpass.getpass("Secret key: ")
        else:
            secret = sys.stdin.readline()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise UsageError(f"cannot read the secret key: {getattr(error, 'strerror', None) or error}") from None
    secret = secret.strip()
    if not secret:
        raise UsageError(f"no secret key: use --secret-file, set {SECRET_VARIABLE} or run in a terminal")
    return secret


def confirmed(invocation: Invocation, question: str, action: str) -> bool:
    """True with --yes, or when the person at the terminal types yes."""
    if invocation.args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"stdin is not a terminal to confirm on: pass --yes to {action}")
    invocation.stderr.write(f"{question} Type {CONFIRMATION_WORD} to continue: ")
    invocation.stderr.flush()
    return sys.stdin.readline().strip().lower() == CONFIRMATION_WORD


class ProgressDisplay:
    """Progress of one job on stderr: a line redrawn in place on a terminal, otherwise
    plain lines at most every PLAIN_PROGRESS_INTERVAL seconds."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.live = stream.isatty()
        self._last_plain: float | None = None
        self._drawn = False

    def show(self, progress: Progress | None) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size().columns - 1 if self.live else None
        line = progress_line(progress, width)
        if not line:
            return
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if self._last_plain is None or now - self._last_plain >= PLAIN_PROGRESS_INTERVAL:
            self._last_plain = now
            print(line, file=self.stream, flush=True)

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class LiveScreen:
    """A block of lines on a terminal, redrawn in place; lines are cut to the width so none wraps."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._height = 0

    def draw(self, text: str) -> None:
        width = max(shutil.get_terminal_size().columns - 1, 20)
        lines = [line[:width] for line in text.splitlines()]
        up = f"\x1b[{self._height}A\r" if self._height else "\r"
        self.stream.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.stream.flush()
        self._height = len(lines)

    def __enter__(self) -> LiveScreen:
        self.stream.write("\x1b[?25l")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.write("\x1b[?25h")
        self.stream.flush()
