"""Borg's grammar for the option values the daemon passes on: compression specs, exclude patterns.

Mirrors what borg 1.4 parses (``borg.compress.CompressionSpec``, ``borg.patterns.parse_pattern``)
without importing borg: the daemon runs whichever borg the operator names. It is stricter than
borg: only the documented forms pass, and every value that passes is one borg accepts. Each
check raises ValueError with a sentence for a person.
"""

from __future__ import annotations

import re

COMPRESSION_FORMS = "none, lz4, zstd[,1-22], zlib[,0-9], lzma[,0-9], auto,C[,L] or obfuscate,SPEC,C[,L]"
PATTERN_STYLES = ("fm", "sh", "re", "pp", "pf")

_PLAIN_COMPRESSORS = ("none", "lz4")
_LEVELS = {"zstd": range(1, 23), "zlib": range(0, 10), "lzma": range(0, 10)}
_OBFUSCATE_SPECS = (*range(1, 7), *range(110, 124))
_NUMBER = re.compile(r"\A[0-9]{1,3}\Z")
_CONTROL = ("\0", "\n", "\r")


def check_compression(spec: str) -> None:
    """``obfuscate,SPEC,`` and then ``auto,`` may precede one compressor with its level."""
    parts = spec.split(",")
    if parts[0] == "obfuscate":
        if len(parts) < 3:
            raise ValueError(f"{spec!r}: obfuscate needs a SPEC and a compressor, e.g. obfuscate,3,zstd,3")
        if _number(parts[1]) not in _OBFUSCATE_SPECS:
            raise ValueError(f"{spec!r}: the obfuscate SPEC must be 1 to 6 or 110 to 123")
        parts = parts[2:]
    if parts[0] == "auto":
        if len(parts) < 2:
            raise ValueError(f"{spec!r}: auto needs a compressor, e.g. auto,zstd,3")
        parts = parts[1:]
    _check_compressor(spec, parts)


def _check_compressor(spec: str, parts: list[str]) -> None:
    name, levels = parts[0], _LEVELS.get(parts[0])
    if name in _PLAIN_COMPRESSORS and len(parts) == 1:
        return
    if levels is not None and len(parts) == 1:
        return
    if levels is not None and len(parts) == 2:
        if _number(parts[1]) not in levels:
            raise ValueError(f"{spec!r}: the {name} level must be {levels.start} to {levels.stop - 1}")
        return
    raise ValueError(f"{spec!r} is not a borg compression spec: use {COMPRESSION_FORMS}")


def _number(text: str) -> int | None:
    return int(text) if _NUMBER.match(text) else None


def check_exclude(pattern: str) -> None:
    """One ``--exclude`` value: ``[style:]pattern``, read the way ``borg.patterns.parse_pattern`` reads it."""
    if not pattern or any(char in pattern for char in _CONTROL):
        raise ValueError(f"Exclude pattern {pattern!r} is empty or holds control characters")
    style, body = split_style(pattern)
    if style is not None and style not in PATTERN_STYLES:
        raise ValueError(f"Exclude pattern {pattern!r} has the unknown style {style!r}: "
                         f"use {', '.join(s + ':' for s in PATTERN_STYLES)} or no prefix")
    if not body:
        raise ValueError(f"Exclude pattern {pattern!r} names nothing after its style")
    if style == "re":
        try:
            re.compile(body)
        except (re.error, RecursionError, OverflowError) as error:
            raise ValueError(f"Exclude pattern {pattern!r} is not a regular expression: {error}") from None
    if style == "sh":
        try:
            re.compile(shell_regex(body))
        except (re.error, RecursionError, OverflowError) as error:
            # borg compiles a shell pattern to a regular expression too, and stops on this one.
            raise ValueError(f"Exclude pattern {pattern!r} is not a shell pattern borg can read: {error}") from None


def split_style(pattern: str) -> tuple[str | None, str]:
    """Borg takes any two letters or digits before a colon as a style prefix."""
    if len(pattern) > 2 and pattern[2] == ":" and pattern[:2].isalnum():
        return pattern[:2], pattern[3:]
    return None, pattern


def shell_regex(glob: str) -> str:
    """borg's shell style: `*` and `?` stop at "/", `**/` spans any number of folders."""
    regex, index = "", 0
    while index < len(glob):
        char = glob[index]
        index += 1
        if char == "*" and glob[index:index + 2] == "*/":
            regex += "(?:[^/]*/)*"
            index += 2
        elif char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            closing = _class_end(glob, index)
            if closing is None:
                regex += re.escape(char)
            else:
                members = glob[index:closing].replace("\\", "\\\\")
                if members.startswith("!"):
                    members = "^" + members[1:]
                elif members.startswith("^"):
                    members = "\\" + members
                regex += "[" + members + "]"
                index = closing + 1
        else:
            regex += re.escape(char)
    return "(?ms)" + regex + r"\Z"


def _class_end(glob: str, start: int) -> int | None:
    index = start
    if index < len(glob) and glob[index] == "!":
        index += 1
    if index < len(glob) and glob[index] == "]":
        index += 1
    while index < len(glob) and glob[index] != "]":
        index += 1
    return index if index < len(glob) else None
