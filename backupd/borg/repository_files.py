"""The files of a borg 1.x repository as they lie in its folder (or in a bucket that mirrors
it): which files belong to one committed transaction, and what the index's header says."""

from __future__ import annotations

import configparser
import re

# Beside the transaction files and the segments, the files a repository's top holds.
TOP_FILES = frozenset({"config", "README", "nonce"})
INDEX_MAGIC = "BORG_IDX"
# The magic, then the number of entries as a little-endian int32.
INDEX_COUNT_END = len(INDEX_MAGIC) + 4

_TRANSACTION_FILE = re.compile(r"^(index|hints|integrity)\.(\d+)$")
_SEGMENT = re.compile(r"^data/\d+/(\d+)$")


def transaction_file(path: str) -> tuple[str, int] | None:
    """("index", 9) for index.9 (also hints and integrity); None for any other path."""
    match = _TRANSACTION_FILE.match(path)
    return (match[1], int(match[2])) if match else None


def segment_number(path: str) -> int | None:
    """9 for data/0/9; None for a path that is not a segment's."""
    match = _SEGMENT.match(path)
    return int(match[1]) if match else None


def is_repository_config(text: str) -> bool:
    """Whether a config file's text is a borg repository's: it has a [repository] section."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return parser.has_section("repository")


def index_entry_count(start: str) -> int | None:
    """The number of objects an index names, from its first INDEX_COUNT_END bytes decoded as
    UTF-8 with replacement. A count with a byte that is not ASCII cannot be read back from such
    text: None then, as for anything that is not an index."""
    if len(start) < INDEX_COUNT_END or not start.startswith(INDEX_MAGIC):
        return None
    count = start[len(INDEX_MAGIC):INDEX_COUNT_END]
    if not count.isascii():
        return None
    return int.from_bytes(count.encode("ascii"), "little")
