"""snapshots, ls, versions and diff: looking inside the repository."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from backupctl.client import Client
from backupctl.invocation import EXIT_OK, Invocation
from backupctl.snapshot_records import ChangesPage, FolderPage, PathVersions, SnapshotListed
from backupctl.render.browse import describe_changes, describe_listing, describe_snapshots, describe_versions

PAGE_SIZE = 1000
SNAPSHOTS_PAGE = 1000


Page = TypeVar("Page", FolderPage, ChangesPage)


def pages(client: Client, method: str, params: dict[str, Any], limit: int | None,
          page_type: type[Page]) -> Iterator[Page]:
    """Each page of a paged method's answer, following its cursor until limit items were shown."""
    shown = 0
    while True:
        page = page_type.from_wire(
            client.call(method, {**params, "limit": min(PAGE_SIZE, limit - shown) if limit else PAGE_SIZE}))
        yield page
        shown += len(page.entries if isinstance(page, FolderPage) else page.changes)
        if page.cursor is None or (limit is not None and shown >= limit):
            return
        params = {**params, "cursor": page.cursor}


def run_snapshots(invocation: Invocation) -> int:
    snapshots = list(invocation.client.paged("snapshots", "snapshots", {"limit": SNAPSHOTS_PAGE}))
    if invocation.as_json:
        invocation.emit_json(snapshots)
        return EXIT_OK
    invocation.say(describe_snapshots([SnapshotListed.from_wire(snapshot) for snapshot in snapshots], time.time()))
    return EXIT_OK


def run_ls(invocation: Invocation) -> int:
    args = invocation.args
    snapshot, path = args.snapshot, args.path
    if snapshot is not None and snapshot.startswith("/") and path is None:
        snapshot, path = None, snapshot
    params: dict[str, Any] = {}
    if snapshot is not None:
        params["snapshot"] = snapshot
    if path is not None:
        params["path"] = os.path.normpath(path) if path != "/" else path
    listed = list(pages(invocation.client, "browse", params, args.limit, FolderPage))
    entries = [entry for page in listed for entry in page.entries]
    if invocation.as_json:
        invocation.emit_json({**listed[0].to_wire(), "entries": [entry.to_wire() for entry in entries],
                              "cursor": listed[-1].cursor})
        return EXIT_OK
    invocation.say(describe_listing(listed[0], entries, more=listed[-1].cursor is not None))
    return EXIT_OK


def run_versions(invocation: Invocation) -> int:
    found = invocation.client.call("versions", {"path": os.path.abspath(invocation.args.path)})
    if invocation.as_json:
        invocation.emit_json(found)
        return EXIT_OK
    invocation.say(describe_versions(PathVersions.from_wire(found)))
    return EXIT_OK


def run_diff(invocation: Invocation) -> int:
    args = invocation.args
    params = {"from": args.old} | ({"to": args.new} if args.new is not None else {})
    listed = list(pages(invocation.client, "compare", params, args.limit, ChangesPage))
    changes = [change for page in listed for change in page.changes]
    if invocation.as_json:
        invocation.emit_json({**listed[0].to_wire(), "changes": [change.to_wire() for change in changes],
                              "cursor": listed[-1].cursor})
        return EXIT_OK
    invocation.say(describe_changes(listed[0], changes, more=listed[-1].cursor is not None))
    return EXIT_OK
