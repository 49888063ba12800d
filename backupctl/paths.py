"""File names on the wire, in JSON and on a terminal.

A path is the bytes the kernel gives; Python holds one that is not UTF-8 as a ``str`` whose
undecodable bytes are lone surrogates U+DC80..U+DCFF (``os.fsdecode``, "surrogateescape").
On the wire a path that is valid UTF-8 is a msgpack str and any other is a msgpack bin
holding its exact bytes. In JSON (the daemon's saved history, ``backupctl --json``) such a
byte is the escape ``\\udcXX``, which Python's ``json.loads`` and ``os.fsencode`` turn back
into the byte. Text for people (log lines, messages, what backupctl prints) shows it as
``\\xXX``.
"""

from __future__ import annotations

import re
from typing import Any

WirePath = str | bytes  # a path as the wire carries it

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def to_wire(value: Any) -> Any:
    """value with every str that is not UTF-8 (paths held with surrogates) as its exact bytes."""
    if isinstance(value, str):
        return value if is_utf8(value) else _encoded(value)
    if isinstance(value, dict):
        return {to_wire(key): to_wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    return value


def from_wire(path: WirePath) -> str:
    """A path as received (str, or bin for one that is not UTF-8) as Python holds file names."""
    if isinstance(path, bytes):
        return path.decode("utf-8", "surrogateescape")
    return path


def for_json(value: Any) -> Any:
    """value with every bin path as a str holding its undecodable bytes as surrogates, for JSON."""
    if isinstance(value, bytes):
        return from_wire(value)
    if isinstance(value, dict):
        return {for_json(key): for_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [for_json(item) for item in value]
    return value


def escape_surrogates_in_json(text: str) -> str:
    """JSON text written with ensure_ascii=False, with each lone surrogate as its \\uXXXX escape.

    Lone surrogates can only stand inside JSON strings, where the escape means the same."""
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def printable(text: WirePath) -> str:
    """Text (or a path) for people: each byte that is not UTF-8 shown as \\xXX; never fails."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    if is_utf8(text):
        return text
    return _encoded(text).decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    return _SURROGATE.search(text) is None


def _encoded(text: str) -> bytes:
    """The bytes a str with surrogates stands for; a surrogate that stands for no byte stays visible."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _NOT_A_BYTE.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode("utf-8", "surrogateescape")
