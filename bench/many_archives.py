"""`python -m bench.many_archives REPOSITORY COUNT HOST`: COUNT real archives, an hour apart and
ending now, named as HOST's daemon names its snapshots, added to an existing repository by one
process through borg's own library.

`borg create` once per archive costs 0.3-0.5 s each, mostly reading and writing the manifest
and committing. Here each archive is made by borg's `Archive` (one folder and one empty file
as its items, its metadata chunk, the chunk cache's reference counts) and saved by
`Archive.save`; only the manifest write, the repository commit and the cache commit it does
after each archive are held back and done once at the end. The result is what borg would have
left after COUNT `borg create` runs: `borg list` shows every archive, `borg check` accepts them.

Borg reads its passphrase and BORG_BASE_DIR from the environment, as when it runs as a command.
"""

from __future__ import annotations

import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from backupd.archive_names import OwnArchives

HOUR = timedelta(hours=1)


def archive_times(count: int, now: datetime) -> list[datetime]:
    """An hourly schedule that ran count times, the last one an hour before now (naive UTC, as borg keeps time)."""
    last = now.replace(minute=0, second=0, microsecond=0) - HOUR
    return [last - HOUR * (count - 1 - index) for index in range(count)]


def write_archives(repository_path: str, count: int, host: str) -> None:
    from borg.archive import Archive
    from borg.cache import Cache
    from borg.helpers import Manifest
    from borg.item import Item
    from borg.logger import setup_logging
    from borg.repository import Repository

    setup_logging(level="warning")

    own = OwnArchives.of_host(host)
    with Repository(repository_path, exclusive=True) as repository:
        manifest, key = Manifest.load(repository, (Manifest.Operation.WRITE,))
        with Cache(repository, key, manifest, warn_if_unencrypted=False) as cache:
            with held_back((manifest, "write"), (repository, "commit"), (cache, "commit")):
                for started in archive_times(count, datetime.now(timezone.utc).replace(tzinfo=None)):
                    name = own.name_at(started.replace(tzinfo=timezone.utc).timestamp())
                    archive = Archive(repository, key, manifest, name, cache=cache, create=True,
                                      start=started, start_monotonic=time.monotonic())
                    mtime = int(started.replace(tzinfo=timezone.utc).timestamp() * 1e9)
                    owner: dict[str, Any] = {"uid": 0, "gid": 0, "user": "root", "group": "root", "mtime": mtime}
                    archive.add_item(Item(path="seed", mode=stat.S_IFDIR | 0o755, **owner))
                    archive.add_item(Item(path="seed/hourly", mode=stat.S_IFREG | 0o644, chunks=[], **owner))
                    archive.stats.nfiles = 1
                    archive.save(timestamp=started)
            manifest.write()
            repository.commit(compact=False)
            cache.commit()


@contextmanager
def held_back(*calls: tuple[Any, str]) -> Iterator[None]:
    """`Archive.save` writes the manifest and commits the repository and the cache after every
    archive; while this holds, those calls do nothing."""
    for holder, method in calls:
        setattr(holder, method, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for holder, method in calls:
            del holder.__dict__[method]


def main(argv: list[str]) -> int:
    repository, count, host = argv
    write_archives(repository, int(count), host)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
