"""Bytes from a child's pipe into lines: decoded or not, an endless line cut at a bound."""

from __future__ import annotations

MAX_LINE_BYTES = 1024 * 1024


def decode(data: bytes | bytearray, encoding: str = "utf-8") -> str:
    return bytes(data).decode(encoding, errors="replace")


class LineSplitter:
    """Bytes in, complete decoded lines out; an endless line is cut at ``max_line_bytes``."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES, encoding: str = "utf-8") -> None:
        self._buffer = b""
        self._max_line_bytes = max_line_bytes
        self._encoding = encoding

    def feed(self, chunk: bytes | bytearray) -> list[str]:
        return [decode(line, self._encoding) for line in self.feed_bytes(chunk)]

    def feed_bytes(self, chunk: bytes | bytearray) -> list[bytes]:
        """The complete lines, undecoded, without their line ends."""
        lines = (self._buffer + chunk).split(b"\n")
        rest = lines.pop()
        while len(rest) > self._max_line_bytes:
            lines.append(rest[: self._max_line_bytes])
            rest = rest[self._max_line_bytes:]
        self._buffer = rest
        return lines

    def flush(self) -> list[str]:
        return [decode(line, self._encoding) for line in self.flush_bytes()]

    def flush_bytes(self) -> list[bytes]:
        rest = self._buffer
        self._buffer = b""
        return [rest] if rest else []
