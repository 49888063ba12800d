"""What goes wrong in a restore, in words for people."""

from __future__ import annotations


class RestoreError(Exception):
    """A restore cannot be prepared, committed or undone; the message says why for people."""


class NotInSnapshot(RestoreError):
    """borg extracted nothing for some targets: the snapshot does not hold them."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"the snapshot does not hold {', '.join(missing)}; nothing was restored")
        self.missing = missing


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename2 is not None:
        return f"cannot move {error.filename} to {error.filename2}: {error.strerror}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def counted(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
