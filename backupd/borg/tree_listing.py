"""Reading borg's listing of an archive (commands.list_tree) as it streams in."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from backupd.borg.commands import EXACT_NAMES_ENCODING, TREE_FIELDS

KINDS = {"-": "file", "h": "file", "d": "folder", "l": "link"}


@dataclass(frozen=True, slots=True)
class TreeItem:
    path: str  # archive path; a name that is not UTF-8 holds surrogates
    kind: str  # file, folder, link or other
    mode: str  # as ls shows it: -rw-r--r--
    uid: int
    gid: int
    user: str
    group: str
    size: int
    mtime: float | None
    target: str | None  # a link's target; a hard link's first path
    hard_link: bool = False


class TreeParser:
    """Bytes of borg's output in, complete items out; a chunk may end anywhere."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder(EXACT_NAMES_ENCODING)(errors="replace")
        self._pending = ""
        self._head: list[str] | None = None

    def feed(self, chunk: bytes) -> list[TreeItem]:
        self._pending += self._decoder.decode(chunk)
        *records, self._pending = self._pending.split("\0")
        return self._items(records)

    def finish(self) -> list[TreeItem]:
        self._pending += self._decoder.decode(b"", final=True)
        records, self._pending = self._pending.split("\0")[:-1], ""
        return self._items(records)

    def _items(self, records: list[str]) -> list[TreeItem]:
        items = []
        for record in records:
            if self._head is None:
                self._head = record.lstrip("\n").split("\t", len(TREE_FIELDS))
                continue
            head, self._head = self._head, None
            if len(head) == len(TREE_FIELDS) + 1:
                items.append(_item(head, record))
        return items


def tree_items(chunks: Iterable[bytes]) -> Iterator[TreeItem]:
    """borg's listing, chunk by chunk as it arrives, as items."""
    parser = TreeParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()


def _item(head: list[str], source: str) -> TreeItem:
    _type, mode, uid, gid, user, group, size, mtime, path = head
    kind = KINDS.get(mode[:1], "other")
    hard_link = mode.startswith("h")
    return TreeItem(
        path=path,
        kind=kind,
        mode="-" + mode[1:] if hard_link else mode,
        uid=_int(uid),
        gid=_int(gid),
        user=user,
        group=group,
        size=_int(size),
        mtime=_utc_time(mtime),
        target=source or None,
        hard_link=hard_link,
    )


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _utc_time(text: str) -> float | None:
    """borg prints local time without an offset; it runs with TZ=UTC for this listing."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
